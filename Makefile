# Two entry points, both self-installing: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
STATE  ?= .demo-state

.PHONY: demo test lint unit e2e bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "meshpilot needs Python 3.11 or newer (found %s); set PYTHON=python3.x" % sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml tools/fetch-prometheus
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@$(BIN)/python -c 'import meshpilot.proxy.envoy as e; print("envoy:", e.envoy_version())' 2>/dev/null || true
	@tools/fetch-prometheus $(VENV)/tools/prometheus  # best-effort: real-PromQL tests skip without it
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/meshpilot demo --state $(STATE)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -q

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

e2e: $(STAMP)
	$(BIN)/pytest -q tests/e2e

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(STATE) .pytest_cache .ruff_cache .hypothesis
