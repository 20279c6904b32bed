# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit integration fmt clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(STAMP)
	$(BIN)/toloka-connector demo

# promtool (from Debian's package, unpacked into a cache) lets the tests check the metrics,
# rules and Prometheus config; without it those tests skip and say why.
test: $(STAMP) lint typecheck
	PROMTOOL="$${PROMTOOL:-$$(scripts/get-promtool.sh 2>/dev/null)}" $(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check connector tests
	$(BIN)/ruff format --check connector tests

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/pytest -q -m integration

fmt: $(STAMP)
	$(BIN)/ruff format connector tests
	$(BIN)/ruff check --fix connector tests

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
