# redline: `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test install system-deps bench schemas clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

install: $(STAMP)

## Debian packages the tests use (Go and golang.org/x/mod for the interop test).
system-deps:
	@bash scripts/system-deps.sh

demo: $(STAMP)
	$(BIN)/redline demo

test: $(STAMP) system-deps
	$(BIN)/python -m pytest -n 2 -q

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
