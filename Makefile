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

test: setup lint  ## Lint, then the whole test suite against PostgreSQL, Redis and real workers
	$(BIN)/python -m pytest

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
