# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit integration fmt clean tools

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(STAMP)
	$(BIN)/toloka-connector demo

test: $(STAMP) tools lint typecheck
	$(BIN)/pytest -q

# Optional tools the tests use when present (promtool, a toloka-kit venv); never fatal.
tools:

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
