# Two commands on a fresh clone:  `make demo`  and  `make test`.
# Everything they need is installed here: the Python environment (torch pinned, CPU build,
# installed first), the project and its dev tools, and the npm packages for contracts/anvil.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed
NPM_STAMP := contracts/node_modules/.installed
BENCH_STAMP := $(VENV)/.bench-installed
RAY_STAMP := $(VENV)/.ray-installed
TORCH  := torch==2.13.0

LINT_DIRS := $(wildcard agent strategies tests benchmarks)

.PHONY: demo test lint typecheck pytest install npm browser sandbox contracts contracts-check bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Ray and Optuna (the `ray` extra: agora tune, compute.backend: ray). The tests need them;
# `make demo` does not.
$(RAY_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e '.[dev,ray]'
	touch $(RAY_STAMP)

$(NPM_STAMP): contracts/package.json contracts/package-lock.json
	cd contracts && npm ci --no-audit --no-fund --loglevel=error
	touch $(NPM_STAMP)

npm: $(NPM_STAMP)

# Recompile the Solidity sources into agent/chain/artifacts (committed package data).
contracts: $(NPM_STAMP)
	node contracts/build.mjs

# Fail if the committed artifacts differ from what the pinned compiler makes of the sources.
contracts-check: $(NPM_STAMP)
	node contracts/build.mjs --check

demo: $(STAMP) sandbox
	$(BIN)/agora demo

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_DIRS)
	$(BIN)/ruff format --check $(LINT_DIRS)
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP) $(RAY_STAMP)
	$(BIN)/mypy

# Browser tests render the HTML reports in headless Chromium (Debian package; CI runs as root).
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

# Third-party strategy plugins run only inside bubblewrap (Debian package; CI runs as root).
sandbox:
	@command -v bwrap >/dev/null || { apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null; }

# The slow end-to-end tests (the learning runs with the shipped defaults and their payouts,
# the kill test, the node and busy-database runs, `agora run`, the tests on a `ray start` head)
# run in a second pytest process beside the rest, one per core, so both take about as long;
# both must pass. Each prints its slowest tests (where the time goes: benchmarks/README.md).
pytest: $(STAMP) $(RAY_STAMP) $(NPM_STAMP) browser sandbox
	@$(BIN)/pytest -q -m slow --durations=10 > .pytest-slow.log 2>&1 & slow=$$!; \
	$(BIN)/pytest -q -m "not slow" --durations=25; fast=$$?; \
	wait $$slow; slow_rc=$$?; \
	echo "== slow tests (pytest -m slow)"; cat .pytest-slow.log; rm -f .pytest-slow.log; \
	test $$fast -eq 0 && test $$slow_rc -eq 0

test: lint typecheck contracts-check pytest

# The benchmarks' peers (vectorbt) are the `bench` extra. Each script runs with its defaults
# (make_test.py only prints the recorded `make test` time: pass --run to measure it).
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e '.[dev,bench,ray]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	@for b in benchmarks/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) contracts/node_modules .pytest_cache .mypy_cache .ruff_cache
