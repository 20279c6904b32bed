# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when missing:
# `make demo` installs only what the connector needs to run, `make test` the development tools too.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUNTIME_STAMP := $(VENV)/.installed-runtime
# toloka-kit 1.2.3 (the public client of the real API) pins httpx<0.28 and cattrs 22, so the
# compatibility test runs it from a virtual environment of its own.
TOLOKAKIT := .venv-tolokakit

.PHONY: demo test lint typecheck unit integration chaos bench fmt clean compose-images compose-e2e

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(RUNTIME_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(TOLOKAKIT)/.installed:
	test -x $(TOLOKAKIT)/bin/python || $(PYTHON) -m venv $(TOLOKAKIT)
	$(TOLOKAKIT)/bin/python -m pip install --quiet "toloka-kit==1.2.3" "httpx<0.28" "cattrs>=22,<23"
	touch $@

demo: $(RUNTIME_STAMP)
	$(BIN)/toloka-connector demo

# promtool (from Debian's package, unpacked into a cache) lets the tests check the metrics,
# rules and Prometheus config; without it those tests skip and say why.
# Two workers (pytest-xdist, each with its own broker): most of the suite waits on brokers,
# processes and timeouts rather than on a core. PYTEST_WORKERS=0 runs it in one process.
# Work stealing: with the default split one worker idled for about 5 of 13 minutes at the end.
# The tests marked slow run first (tests/conftest.py), so the run ends on short ones.
PYTEST_WORKERS ?= 2

# The editable install is not byte-compiled, and where PYTHONDONTWRITEBYTECODE is set nothing is
# written at import: each connector process the tests start (hundreds) compiled ~90 modules.
test: $(STAMP) $(TOLOKAKIT)/.installed lint typecheck
	$(BIN)/python -m compileall -q connector testkit
	PROMTOOL="$${PROMTOOL:-$$(scripts/get-promtool.sh 2>/dev/null)}" $(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist worksteal

CODE := connector testkit tests benchmarks reliability

lint: $(STAMP)
	$(BIN)/ruff check $(CODE)
	$(BIN)/ruff format --check $(CODE)

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/pytest -q -m integration

# Kills, broker faults, API faults and hostile input at full size (~10 min): docs/reliability.md
chaos: $(STAMP)
	$(BIN)/python -m reliability

# Throughput, latency, memory and scale against baselines of the same run: docs/benchmarks.md
bench: $(STAMP)
	$(BIN)/python -m benchmarks

# Opt-in, never part of `make test`: the compose stack run for real (tests/e2e/compose_e2e.py),
# on images made from Debian's packages and Maven Central (tests/e2e/images.py; needs root and
# debootstrap for the Debian base). Without a container engine it says so and exits 0.
# COMPOSE=docker-compose picks compose v1 where the v2 plugin is installed too.
compose-images: $(STAMP)
	$(BIN)/python -m tests.e2e.images $(if $(REBUILD),--rebuild)

compose-e2e: $(STAMP)
	$(BIN)/python -m tests.e2e.compose_e2e $(if $(COMPOSE),--compose "$(COMPOSE)")

fmt: $(STAMP)
	$(BIN)/ruff format $(CODE)
	$(BIN)/ruff check --fix $(CODE)

clean:
	rm -rf $(VENV) $(TOLOKAKIT) .mypy_cache .ruff_cache .pytest_cache
