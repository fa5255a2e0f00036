# Flow Platform — the two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Where `make web` listens.
WEB_ADDR ?= 127.0.0.1:8000

.PHONY: setup demo test lint format migrate worker beat web

setup: $(VENV)/.installed

$(VENV)/.installed: requirements/base.txt requirements/dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/dev.txt
	touch $@

demo: setup  ## Run the demo flow on embedded defaults (SQLite, in-process execution)
	$(BIN)/python manage.py rundemo

# The engine and fault tests, run a second time through PgBouncer in transaction mode (the
# platform database of the tests and of their workers), and the tests of the embedded path
# (marked `embedded`) a third time on SQLite.
ENGINE_TESTS := tests/flows/test_transitions.py tests/flows/test_reaper.py \
	tests/flows/test_engine.py tests/flows/test_worker_connections.py \
	tests/flows/test_cancel_busy_node.py tests/data/test_partitions.py tests/faults
EMBEDDED_TESTS := tests/flows tests/data

# Bytecode caches on for the tests even where the environment turns them off: every worker,
# beat and web process the tests start would compile the platform's modules again, and pytest
# would rewrite the asserts of every test module in each of the three passes.
test: export PYTHONDONTWRITEBYTECODE =
test: setup lint  ## Lint, then the whole test suite against PostgreSQL, Redis and real workers
	$(BIN)/python -m pytest
	FLOWPLATFORM_TEST_PGBOUNCER=1 $(BIN)/python -m pytest $(ENGINE_TESTS)
	DATABASE_URL=sqlite://:memory: $(BIN)/python -m pytest -m embedded $(EMBEDDED_TESTS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

migrate: setup
	$(BIN)/python manage.py migrate

worker: setup
	$(BIN)/celery -A flowplatform worker --loglevel INFO

beat: setup
	$(BIN)/celery -A flowplatform beat --loglevel INFO

# The development server; --insecure serves the static files (admin styles, Swagger UI)
# straight from the apps while DEBUG is off. Production serves collected files (WhiteNoise).
web: setup
	$(BIN)/python manage.py runserver --insecure $(WEB_ADDR)
