# pgqueue developer commands. `make help` lists them.
# Every target creates .venv and installs the project (with dev extras) on first use.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
LOCAL_DSN ?= postgresql://postgres@127.0.0.1:5432/postgres

.DEFAULT_GOAL := help
.PHONY: help demo test test-unit test-integration test-chaos chaos lint format bench wheel-check clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

help: ## Show this list
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

demo: $(STAMP) ## Schedule jobs (one delayed, one failing then retried), run a worker, print what happened
	@$(PY) examples/demo.py

test: $(STAMP) ## The whole suite (PGQUEUE_TEST_DSN, else testcontainers, else embedded PostgreSQL), with coverage
	$(PY) -m pytest --cov --cov-report=term

test-unit: $(STAMP) ## Unit tests only: no database
	$(PY) -m pytest tests/unit

test-integration: $(STAMP) ## Integration tests on a real server
	$(PY) -m pytest tests/integration

test-chaos: $(STAMP) ## The bounded chaos test (10,000 jobs; as in `make test`) and its regressions, with the summary line
	$(PY) -m pytest tests/chaos -s

chaos: $(STAMP) ## The full chaos soak (100,000 jobs, more kills; about a minute), with its summary line
	PGQUEUE_SLOW=1 $(PY) -m pytest tests/chaos -m "chaos and slow" -s

lint: $(STAMP) ## ruff (check + format check) and mypy --strict
	$(VENV)/bin/ruff check pgqueue tests examples
	$(VENV)/bin/ruff format --check pgqueue tests examples
	$(VENV)/bin/mypy --strict pgqueue tests examples

format: $(STAMP) ## Apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix pgqueue tests examples
	$(VENV)/bin/ruff format pgqueue tests examples

bench: $(STAMP) ## Benchmark (enqueue, drain C=10/50, latency, 2 workers, WAL and DB CPU, RSS, feature drains, management, memory, metrics, churn, limits, pull, loop lag, I/O-bound); BENCH_BIG=1 adds the 1M drain
	$(PY) -m pgqueue.bench

.PHONY: bench-compare bench-ci
bench-compare: $(STAMP) ## pgqueue vs bench_raw.py (+ pgqueuer) on one server, RUNS=3 interleaved: medians, ratios, DB CPU/job
	$(PY) -m pgqueue.bench.compare

bench-ci: $(STAMP) ## Gross-regression check: 5,000-job drain at C=10 vs bench_raw.py, fails below 0.5x raw
	$(PY) -m pgqueue.bench.compare --ci

wheel-check: $(STAMP) ## Build the wheel and check it ships the query files and the migrations
	@rm -rf dist && $(PY) -m pip wheel --quiet --no-deps --wheel-dir dist . >/dev/null
	@$(PY) -c "import sys, zipfile, glob; names = set(zipfile.ZipFile(glob.glob('dist/*.whl')[0]).namelist()); \
	import pathlib; need = {p.as_posix() for p in pathlib.Path('pgqueue/store/postgres/queries').glob('*.sql')} | {'pgqueue/py.typed'} | {f'pgqueue/sql/{p.name}' for p in pathlib.Path('sql').glob('*.sql')} | {p.as_posix() for p in [*pathlib.Path('pgqueue/web/templates').glob('*.html'), *pathlib.Path('pgqueue/web/static').glob('*')]}; missing = need - names; \
	print('wheel ok' if not missing else f'wheel misses {sorted(missing)}'); sys.exit(bool(missing))"

clean: ## Remove the venv, caches and the embedded databases
	rm -rf $(VENV) .pgqueue .pytest_cache .mypy_cache .ruff_cache dist build
