# redline: `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test fuzz install system-deps bench schemas clean assets typecheck lint

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

install: $(STAMP)

## The dashboard's npm assets (uPlot; axe-core for the tests), vendored and pinned: npm only when they are
## missing or do not match scripts/dashboard_assets.py's pins (see its MANIFEST.json files).
assets:
	@$(PYTHON) scripts/dashboard_assets.py

## Debian packages the tests use (Go and golang.org/x/mod for the interop test).
system-deps:
	@bash scripts/system-deps.sh

demo: $(STAMP) assets
	dir=$$(mktemp -d "$${TMPDIR:-/tmp}/redline-demo-XXXXXX") && $(BIN)/redline demo --dir "$$dir"

## The core packages are type-checked (mypy, pinned in the dev extra) before the tests run.
CORE := src/redline/crypto src/redline/log/merkle.py src/redline/log/leaf.py src/redline/log/checkpoint.py \
        src/redline/log/receipt.py src/redline/log/tiles.py src/redline/statements src/redline/policy \
        src/redline/engine src/redline/errors.py src/redline/times.py src/redline/compute/eu.py \
        src/redline/compute/chips.py
typecheck: $(STAMP)
	$(BIN)/python -m mypy --ignore-missing-imports $(CORE)

## Lint (ruff, pinned in the dev extra; its rules are in pyproject.toml) the code, the tests and the benchmarks.
lint: $(STAMP)
	$(BIN)/python -m ruff check src tests bench

test: $(STAMP) system-deps assets lint typecheck
	$(BIN)/python -m pytest -n 2 -q

## The parser fuzz harnesses (tests/fuzz) for minutes, on fresh random inputs: `make test` runs them for seconds.
fuzz: $(STAMP)
	REDLINE_FUZZ=1 $(BIN)/python -m pytest tests/fuzz -n 2 -q

## Every CPU benchmark at full size (see bench/README.md); QUICK=1 for a smoke run.
BENCHES := log_append replay codeshare recorder_overhead hash_throughput verify_cost
bench: $(STAMP)
	@for b in $(BENCHES); do \
	  [ -f bench/$$b.py ] || continue; \
	  echo "== bench/$$b.py"; $(BIN)/python bench/$$b.py $(if $(QUICK),--quick) || exit 1; \
	done

schemas: $(STAMP)
	$(BIN)/python -m redline.statements.schemas docs/schemas

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .hypothesis
