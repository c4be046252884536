# Two commands do all set-up on a fresh clone: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
# Empty: the port of COLLECTOR_URL in .env (the first `make run` wrote it), else 8000.
PORT ?=
PG_URL ?= postgres://postgres@127.0.0.1:5432/test

.PHONY: install run serve migrate seed test test-postgres test-sdk-openai1 lint bench bench-sdk

$(VENV)/.installed: requirements.txt requirements-dev.txt observe_sdk/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements-dev.txt
	$(PIP) install -q -e ./observe_sdk
	touch $@

install: $(VENV)/.installed

migrate: install
	$(PY) manage.py migrate --noinput

# More scripts/run.py options, e.g. make run RUN_ARGS=--no-worker
RUN_ARGS ?=
run: migrate
	$(PY) scripts/run.py --host $(HOST) $(if $(PORT),--port $(PORT)) $(RUN_ARGS)

# e.g. make seed SEED_ARGS="--days 2 --runs-per-day 5"
SEED_ARGS ?=
seed: install
	$(PY) scripts/seed.py $(SEED_ARGS)

test: install
	$(PY) -m pytest -q

# The same suite against the real PostgreSQL (CI runs it after `make test`).
# PostgreSQL means production settings, which need a SECRET_KEY: one made up per run.
test-postgres: install
	DATABASE_URL=$(PG_URL) SECRET_KEY="$${SECRET_KEY:-$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(50))')}" \
		$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .

# The SDK's tests again on the last openai 1.x (built on httpx, not httpx2):
# instrumentation that breaks when the client library moves is caught here.
test-sdk-openai1:
	rm -rf .venv-openai1
	$(PYTHON) -m venv .venv-openai1
	.venv-openai1/bin/pip install -q --upgrade pip
	.venv-openai1/bin/pip install -q "openai==1.109.1" "pinecone==10.2.0" "wrapt==2.5.2" "pytest==9.2.0" -e ./observe_sdk
	.venv-openai1/bin/python -m pytest observe_sdk/tests -q -p no:django -W ignore::pytest.PytestConfigWarning

# Benchmarks (run on demand; they print tables).
bench-sdk:
	test -x .venv-bench/bin/python || $(PYTHON) -m venv .venv-bench
	.venv-bench/bin/pip install -q -r bench/requirements.txt
	.venv-bench/bin/python bench/sdk_overhead.py

bench: install
	$(PY) bench/ingest.py
	$(PY) bench/insights.py
	$(PY) bench/dashboard.py
