# `make run` and `make test` each set up .venv themselves; the stamp makes the second time fast.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The console's browser tests run Debian's chromium; installed here when missing (as root, from Debian's packages).
CHROMIUM := /usr/bin/chromium

.PHONY: run test test-fast lint openapi fuzz data clean

$(CHROMIUM):
	command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,scale]'
	touch $(STAMP)

run: $(STAMP)
	MLSVC_EXAMPLES=1 $(BIN)/mlsvc serve

test: lint $(CHROMIUM)
	$(BIN)/python -m pytest

# The inner loop: every test but the slow ones, which train real models and hold them to quality floors.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

# The gates every change passes before its tests run: lint, formatting and types.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

openapi: $(STAMP)
	$(BIN)/python -m mlsvc.server.openapi > api/openapi.json

# A longer schemathesis run than the suite's (every phase, stateful included, 200 examples per operation) against
# the app served with seeded resources, as tests/test_fuzz_api.py serves it; ARGS adds st options (--seed 3, say).
fuzz: $(STAMP)
	$(BIN)/python -m tests.test_fuzz_api $(ARGS)

data: $(STAMP)
	$(BIN)/python datasources/make_churn.py
	$(BIN)/python datasources/make_fraud.py

clean:
	rm -rf $(VENV) .mlsvc build *.egg-info
