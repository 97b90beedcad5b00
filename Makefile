# Paidan: `make run` starts the product with demo data; `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

# Tests run against real PostgreSQL and Redis; these are the local defaults.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/paidan
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: run run-prod test chaos lint migrate demo schedules bench messages browser clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $(STAMP)

# Browser libraries (SortableJS for the board), served from node_modules by staticfiles.
$(NODE_STAMP): package.json $(wildcard package-lock.json)
	@command -v npm >/dev/null || { echo "npm is needed for the board's browser libraries (Debian: apt-get install npm)"; exit 2; }
	if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
	touch $(NODE_STAMP)

messages: $(STAMP)
	@if command -v msgfmt >/dev/null; then DATABASE_URL= REDIS_URL= $(PY) manage.py compilemessages -v0 --ignore=.venv; \
	else echo "msgfmt not found (Debian: apt-get install gettext): pages stay in English"; fi

# The embedded default: SQLite, in-process Celery worker + beat, in-memory channel layer.
run: $(STAMP) $(NODE_STAMP) messages
	@mkdir -p var/staticfiles
	env -u DATABASE_URL -u REDIS_URL $(PY) manage.py migrate -v0
	env -u DATABASE_URL -u REDIS_URL $(PY) manage.py load_demo
	env -u DATABASE_URL -u REDIS_URL $(PY) manage.py serve --port $(PORT)

# The production shape on this machine: needs DATABASE_URL, REDIS_URL, DJANGO_SECRET_KEY.
run-prod: $(STAMP) $(NODE_STAMP) messages
	@test -n "$$DATABASE_URL" -a -n "$$REDIS_URL" || { echo "set DATABASE_URL and REDIS_URL (see .env.example)"; exit 2; }
	$(PY) manage.py migrate -v0
	$(PY) manage.py collectstatic --noinput -v0
	$(PY) manage.py install_schedules
	$(VENV)/bin/honcho start

browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium fonts-noto-cjk >/dev/null; \
	  else echo "Install Chromium for the page tests: sudo apt-get install chromium fonts-noto-cjk"; exit 2; fi; fi

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check -q .
	DATABASE_URL= REDIS_URL= $(PY) manage.py makemigrations --check --dry-run -v0

test: $(STAMP) $(NODE_STAMP) browser messages lint
	@$(PY) -c "import socket,sys; [socket.create_connection(a, 2) for a in [('127.0.0.1',5432),('127.0.0.1',6379)]]" 2>/dev/null \
	  || { echo "make test needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (README: Tests)"; exit 2; }
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
	  DJANGO_SECRET_KEY=test-only-secret CELERY_TASK_ALWAYS_EAGER=1 SECURE_COOKIES=0 \
	  $(PY) -m pytest $(PYTEST_ARGS)

# Only the fault tests (tests/chaos/, also part of `make test`): a worker killed mid-tick, Redis
# stopped, PostgreSQL restarted, two beats, a 10,000-order burst. docs/reliability.md.
chaos:
	$(MAKE) test PYTEST_ARGS="-m chaos tests/chaos $(PYTEST_ARGS)"

bench: $(STAMP)
	$(PY) manage.py bench ingest

clean:
	rm -rf $(VENV) var node_modules
