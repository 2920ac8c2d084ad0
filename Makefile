# Two commands for a fresh machine:
#   make run    install everything and run the whole platform on embedded defaults
#   make test   install everything and run the whole test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install compile run serve browser promtool static-checks test lint bench bench-smoke flake-hunt clean

install: $(VENV)/.installed node_modules/.installed compile

# The engine's pure modules compiled with mypyc (core/compiled.py); nothing to do when their
# sources are those compiled. PLATFORM_COMPILE=0: plain Python.
compile: $(VENV)/.installed
	$(PY) scripts/compile.py

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	scripts/vendor-assets
	touch $@

run: install
	scripts/run

# The production topology on real services (README, "Real services"; docs/operations.md).
serve: install
	scripts/serve

# Debian's chromium for the browser tests.
browser:
	scripts/install-browser

# promtool for the alert rules' test (monitoring/alerts.yml), from Debian's prometheus package
# (after the browser: two apt-gets at once fail on apt's lock).
promtool: $(VENV)/.installed browser
	scripts/install-promtool

# ruff and mypy need the packages, not the compiled engine: under `make -j2` (CI) they run
# while the engine compiles, and the browser and promtool download while pip installs.
static-checks: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

# The test suite also drives Debian's chromium (browser tests) and promtool (alert rules).
test: install browser promtool static-checks
	STATIC_CHECKS=done scripts/test

# Benchmarks on PostgreSQL (docs/performance.md): figures in bench/results.json and a table.
bench: install
	$(PY) -m bench

bench-smoke: install
	$(PY) -m bench --smoke

lint: static-checks

clean:
	rm -rf var/broker var/staticfiles

# Flake hunt (docs/reliability.md): repeat test folders on PostgreSQL, report every test that ever failed.
RUNS ?= 5
FOLDERS ?= tests/revenue tests/pages tests/orders
flake-hunt: install
	$(PY) scripts/flake_hunt.py --runs $(RUNS) $(FOLDERS)
