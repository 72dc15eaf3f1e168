# The two commands of the README: `make demo` and `make test`.
VENV     ?= .venv
PYTHON   ?= python3
BULKFLOW := $(VENV)/bin/bulkflow
ROWS     ?= 100000
# `make bench BENCH_ARGS="--accounts 4 --agents 2 --kill-agent"`
BENCH_ROWS ?= 1000000
BENCH_ARGS ?=
# `make bench-scaling SCALING_ROWS=80000`: --agents 1, 2 and 4 at --accounts 8, one table
SCALING_ROWS ?= 1000000
# `make chaos CHAOS_ARGS="--scenario postgres --outage 60"`
CHAOS_ROWS ?= 200000
CHAOS_ARGS ?=

.PHONY: install services migrate start stop demo lint test bench bench-scaling chaos clean

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

# The reports as JSON and the table next to them (.md).
bench-scaling: migrate
	$(BULKFLOW) bench-scaling --rows $(SCALING_ROWS) --out bench-scaling-$$(date +%Y%m%d-%H%M%S).json

# Runs Kafka, Postgres and Redis of its own (it stops them): not `services`.
chaos: install
	$(BULKFLOW) chaos --rows $(CHAOS_ROWS) $(CHAOS_ARGS) --out chaos-$$(date +%Y%m%d-%H%M%S).json

lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: lint services
	$(VENV)/bin/pytest

clean: stop
	rm -rf .local $(VENV)
