# Two commands for a fresh machine with Python 3.11: `make demo` and `make test`.
# Each creates .venv, installs the pinned dependencies, migrates, and starts what it needs.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup migrate demo test lint format simulator worker beat flower clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed (set PYTHON=...)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

migrate: setup
	$(BIN)/python manage.py migrate --noinput -v 0

demo: migrate
	$(BIN)/python manage.py demo

test: setup lint
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

simulator: setup
	$(BIN)/python -m simulator --port 8765

worker: migrate
	$(BIN)/celery -A project worker --pool threads --concurrency 8 --loglevel INFO

clean:
	rm -rf $(VENV) var db.sqlite3
