# Two commands on a fresh machine: `make run` (the service) and `make test` (the suite).
# The virtual environment is made once per content of the requirements files: the stamp file carries
# their hash, so a second `make run` installs nothing, and CI can keep VENV outside the checkout.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
REQ_FILES := requirements.txt requirements-nodeps.txt requirements-dev.txt
REQ_HASH := $(shell cat $(REQ_FILES) | $(PYTHON) -c "import hashlib,sys;print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:16])")
# What the service needs at run time (what the image installs), then the test and lint tools on top.
STAMP := $(VENV)/.installed-run-$(REQ_HASH)
DEV_STAMP := $(VENV)/.installed-dev-$(REQ_HASH)

.PHONY: run worker test test-fast test-postgres lint vendor clean-venv

$(STAMP):
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q --upgrade pip
	$(PY) -m pip install --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	$(PY) -m pip check
	@rm -f $(VENV)/.installed-*
	@touch $@

$(DEV_STAMP): $(STAMP)
	$(PY) -m pip install --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip check
	@touch $@

run: $(STAMP)
	$(PY) -m webapp.launcher

# Training workers that join the service the environment names (REDIS_URL, DATABASE_URL); GPUS=0,1: one per GPU.
worker: $(STAMP)
	GPUS=$(GPUS) $(PY) -m webapp.worker

# Test processes (pytest-xdist): one per core by default. A module's tests that share a module-wide fixture run in
# one of them, so that its stack (Redis, Celery worker, ASGI server, Chromium) starts once; the other tests go to
# whichever process is free (tests/conftest.py); the service's long tests first. TEST_WORKERS=0: one process.
TEST_WORKERS ?= auto
XDIST := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadgroup)

# The whole suite, real Redis, Celery, ASGI server and Chromium included; the 15 slowest tests at the end.
test: $(DEV_STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest $(XDIST) --durations=15 $(PYTEST_ARGS)

# For the edit-test loop: no service stack, no browser, no long training run (the e2e, browser and slow marks).
test-fast: $(DEV_STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest $(XDIST) -m "not e2e and not browser and not slow" --durations=5 $(PYTEST_ARGS)

lint: $(DEV_STAMP)
	$(PY) -m ruff check .

# Refresh the vendored front-end libraries from the npm registry (needs node; the result is committed).
vendor:
	npm install --no-audit --no-fund
	mkdir -p static/vendor/uplot
	cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css node_modules/uplot/LICENSE static/vendor/uplot/

clean-venv:
	rm -rf $(VENV)

# The service's tests again on PostgreSQL (DATABASE_URL, e.g. postgres://postgres@127.0.0.1:5432/test;
# pytest-django creates and drops its own test_* database there).
test-postgres: $(DEV_STAMP)
	DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test} $(PY) -m pytest $(XDIST) tests/jobs $(PYTEST_ARGS)
