# The two commands of the README: `make demo` and `make test`.
VENV     ?= .venv
PYTHON   ?= python3
BULKFLOW := $(VENV)/bin/bulkflow
ROWS     ?= 100000

.PHONY: install services migrate start stop demo lint test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

services: install
	$(BULKFLOW) services up

migrate: services
	$(BULKFLOW) migrate

start: migrate
	$(BULKFLOW) start

stop:
	-$(BULKFLOW) stop
	-$(BULKFLOW) services down

demo: start
	$(BULKFLOW) demo --rows $(ROWS)

lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: lint services
	$(VENV)/bin/pytest

clean: stop
	rm -rf .local $(VENV)
