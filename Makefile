# Every target creates or reuses .venv and installs what it needs into it; nothing is installed
# globally (the Debian services the tests use are .ci/run's business).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Integration tests mostly wait on sockets, so one worker per core keeps the suite short.
PYTEST_ARGS ?= -n auto

.PHONY: demo demo-fleet fleet-configs demo-configs test lint bench proto clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
		echo "cannot create $(VENV): on Debian, install the venv module first: apt-get install python3-venv" >&2; \
		exit 1; }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/edge-agent demo

# Two agents, one plant (docs/fleet.md): the kiln's unit agent publishes Sparkplug B, the
# plant-level agent reads it beside the furnace and computes the site KPIs.
demo-fleet: $(STAMP)
	$(BIN)/edge-agent demo --fleet

# config/unit-kiln.toml and config/plant-level.toml are written from config/demo.toml.
fleet-configs: $(STAMP)
	$(BIN)/python -m edge_agent.commands.demo_fleet

# config/demo-gateway.toml is config/demo.toml with the kiln behind an RTU-over-TCP gateway.
demo-configs: $(STAMP)
	$(BIN)/python -m simulators.agent_config

test: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python -m bench

# Regenerates the committed Sparkplug B code from our .proto. The generator is pinned so the output
# is reproducible: grpcio-tools 1.85.1 bundles protoc 35.1 (gencode 7.35.1), which the runtime range
# protobuf>=7.36,<8 in pyproject.toml accepts (same major, runtime not older than the gencode).
PROTO_TOOLS := grpcio-tools==1.85.1
proto: $(STAMP)
	$(BIN)/pip install --quiet '$(PROTO_TOOLS)'
	cd drivers/sparkplug && $(CURDIR)/$(BIN)/python -m grpc_tools.protoc -I. \
		--python_out=. --pyi_out=. sparkplug_b.proto

# Everything the targets and the tests create in the checkout (the tests' own servers and files
# live in temporary directories); tests/test_makefile.py checks the list.
clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist *.egg-info \
		.demo .bench
	find . -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
