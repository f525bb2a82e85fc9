# edge-fer: the two commands.
#   make demo   set up everything (venv, package, models, demo footage) and run the demo pipeline
#   make test   set up everything the tests need (mosquitto too) and run the test suite
# Both are idempotent: the second run only does what is missing.
#   make unit   the fast lane while developing: the tests that need no broker, subprocess or browser

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_ARGS ?= --source demo --duration 60 --window 5
PYTEST_ARGS ?= -q
# Raspberry Pi OS ships picamera2 through apt only: let the venv see it when it is there.
VENV_FLAGS ?= $(if $(wildcard /usr/lib/python3/dist-packages/picamera2),--system-site-packages,)
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: demo test unit install models test-packages lint clean help check-ha

help:
	@echo "make demo   install edge-fer in $(VENV), fetch the models, run the demo (summaries on stdout)"
	@echo "make test   the same set-up plus mosquitto, then the test suite"
	@echo "make unit   only the tests that need no broker, subprocess or browser (not the CI gate)"
	@echo "make check-ha  the discovery against a real Home Assistant (pinned, cached in ~/.cache/edge-fer/ha-venv)"

demo: install models
	$(BIN)/edge-fer run $(DEMO_ARGS)

test: install models test-packages lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The integration tests are marked in tests/conftest.py (by fixture use, or by hand).
unit: install models
	$(BIN)/python -m pytest -m "not integration" $(PYTEST_ARGS)

$(BIN)/python:
	@$(PYTHON) -m venv $(VENV_FLAGS) $(VENV) 2>/dev/null || { \
	  echo "python3 venv support is missing: installing python3-venv from Debian's packages"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv && \
	  $(PYTHON) -m venv $(VENV_FLAGS) $(VENV); }
	$(BIN)/python -m pip install --quiet --upgrade pip

# `onnx` (onnxruntime) for the ONNX back-end's parity tests, which must run, never skip.
$(VENV)/.installed: $(BIN)/python setup.py
	$(BIN)/python -m pip install --quiet -e '.[dev,eval,onnx]'
	@touch $@

install: $(VENV)/.installed

models: install
	$(BIN)/edge-fer models fetch

# What the tests need from Debian: a real broker (each test starts its own on a free port) and
# a headless browser for the dashboard test.
test-packages:
	@missing=""; \
	command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing from Debian's packages"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

# Not part of `make test`: installs a pinned Home Assistant (once, ~600 MB) and runs edge-fer
# against it for about a minute (tests/integration/check_ha.py says what it asserts).
check-ha: install models test-packages
	$(BIN)/python -m tests.integration.check_ha

lint: install
	$(BIN)/python -m ruff check edge_fer tests
	$(BIN)/python -m ruff format --check edge_fer tests
	$(BIN)/python -m mypy edge_fer

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
