# Two commands for a newcomer: `make run` (set up + run the pipeline on the embedded default)
# and `make test` (set up + run the whole test suite, starting a real Kafka broker itself).
# Installs come from uv.lock only (`uv sync --locked`); uv itself is bootstrapped with pip,
# pinned, into .tools/ when it is not on PATH. Refresh the lock with `make lock`.
PYTHON ?= python3
UV_VERSION := 0.13.9
UV ?= $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
VENV ?= .venv
PY := $(VENV)/bin/python
HUB := $(VENV)/bin/hub
STORE ?= .hub/store
EVENTS ?= 200000

.PHONY: setup run test bench lock clean

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --locked --extra test --python $(PYTHON) -q
	touch $@

setup: $(VENV)/.installed

run: setup
	$(HUB) run --events $(EVENTS) --clickhouse chdb://$(STORE)
	$(HUB) query --clickhouse chdb://$(STORE) --report latency | head -n 12

test: setup
	scripts/kafka/kafka fetch
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lock: | $(UV)
	$(UV) lock --upgrade

clean:
	rm -rf .hub
