# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
# The PostgreSQL the test suite runs a second time against (skipped with a reason when absent).
TEST_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/postgres

.PHONY: run test lint format migrate clean bench lock

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11 or newer is needed"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.base: $(BIN)/python requirements/base.txt
	$(BIN)/python -m pip install --quiet -r requirements/base.txt
	touch $@

$(VENV)/.dev: $(VENV)/.base requirements/dev.txt
	$(BIN)/python -m pip install --quiet -r requirements/dev.txt
	touch $@

migrate: $(VENV)/.base
	$(BIN)/python manage.py migrate --noinput

# The worker (delayed work: email notifications) runs beside the server and stops with it.
run: migrate
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	@echo "Chat on http://127.0.0.1:$(PORT)/ with its worker (Ctrl-C stops both)"
	$(BIN)/python manage.py db_worker --no-reload & worker=$$!; trap 'kill $$worker 2>/dev/null' EXIT INT TERM; \
	$(BIN)/daphne -b 127.0.0.1 -p $(PORT) --websocket-max-frame-size 65536 --websocket-max-message-size 2097152 config.asgi:application

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	$(BIN)/python -m pytest
	@echo "--- the database tests again, on PostgreSQL ($(TEST_POSTGRES_URL))"
	DATABASE_URL=$(TEST_POSTGRES_URL) CONN_MAX_AGE=0 $(BIN)/python -m pytest accounts chat

# A fan-out on a throwaway PostgreSQL + Redis + daphne stack (docs/performance.md); BENCH_ARGS to change it.
BENCH_ARGS ?= --reference --layer core fanout --clients 300 --senders 10 --users 100
bench: $(VENV)/.dev
	$(BIN)/python -m loadtest.bench $(BENCH_ARGS)

# requirements/*.txt compiled from requirements/*.in, every distribution at an exact version. Pins already in a .txt
# are kept unless its .in asks for another; UPGRADE='--upgrade-package NAME' moves a transitive one to its newest.
PIP_COMPILE = $(BIN)/pip-compile --quiet --strip-extras --no-allow-unsafe --no-emit-index-url --no-emit-trusted-host \
	--no-emit-find-links $(UPGRADE)
lock: $(VENV)/.dev
	$(PIP_COMPILE) --output-file requirements/base.txt requirements/base.in
	$(PIP_COMPILE) --output-file requirements/dev.txt requirements/dev.in
	$(PIP_COMPILE) --output-file requirements/s3.txt requirements/s3.in

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .ruff_cache
