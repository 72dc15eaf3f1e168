# The two commands of the README: `make demo` and `make test`.
VENV     ?= .venv
PYTHON   ?= python3
BULKFLOW := $(VENV)/bin/bulkflow
ROWS     ?= 100000
# `make bench BENCH_ARGS="--accounts 4 --agents 2 --kill-agent"`
BENCH_ROWS ?= 1000000
BENCH_ARGS ?=

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

bench: migrate
	$(BULKFLOW) bench --rows $(BENCH_ROWS) $(BENCH_ARGS) --out bench-$$(date +%Y%m%d-%H%M%S).json

lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: lint services
	$(VENV)/bin/pytest

clean: stop
	rm -rf .local $(VENV)
