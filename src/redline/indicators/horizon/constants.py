"""Names and defaults of the time-horizon method."""

from __future__ import annotations

#: Indicator name; feeds the policy metric ``time_horizon_50`` (hours).
INDICATOR_NAME = "time-horizon-50"
METHOD = "metr-logistic-2025"
METHOD_VERSION = "1"
#: METR's ``regularization: 0.1`` → ``LogisticRegression(C=1/0.1)``.
DEFAULT_C = 10.0
DEFAULT_BOOTSTRAP = 1000
DEFAULT_SEED = 42
CONFIDENCE = 0.95
#: Horizons below this (minutes) are clipped in the trend fit and dropped from bootstrap trend draws (METR).
MIN_TREND_MINUTES = 1e-3
