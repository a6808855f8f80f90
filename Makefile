# Two commands for a newcomer: `make run` (set up + run the pipeline on the embedded default)
# and `make test` (set up + run the whole test suite, starting a real Kafka broker itself).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HUB := $(VENV)/bin/hub
STORE ?= .hub/store
EVENTS ?= 200000

.PHONY: setup run test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

setup: $(VENV)/.installed

run: setup
	$(HUB) run --events $(EVENTS) --clickhouse chdb://$(STORE)
	$(HUB) query --clickhouse chdb://$(STORE) --report latency | head -n 12

test: setup
	scripts/kafka/kafka fetch
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

clean:
	rm -rf .hub
