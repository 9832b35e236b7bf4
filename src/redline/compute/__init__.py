"""Compute accounting: the chip catalog and H100-equivalents (pure, import-light).

Heavy estimators (operation counting with PyTorch) live in their own modules and
are imported only where needed; importing ``redline.compute`` stays cheap.
"""

from redline.compute.chips import H100E_TFLOPS, Chip, get_chip, h100e, load_catalog, parse_catalog

__all__ = ["H100E_TFLOPS", "Chip", "get_chip", "h100e", "load_catalog", "parse_catalog"]
