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
# The versions the tests and the README's figures were measured with (`make lock` refreshes it).
CONSTRAINTS ?= firmware_config/constraints.txt
# LiteRT, numpy and OpenCV publish no wheel for 32-bit ARM on PyPI: stop there, clearly.
ARCH := $(shell uname -m)

.PHONY: demo test unit install models test-packages lint clean help check-ha lock check-lock check-arm64 arch

help:
	@echo "make demo   install edge-fer in $(VENV), fetch the models, run the demo (summaries on stdout)"
	@echo "make test   the same set-up plus mosquitto, then the test suite"
	@echo "make unit   only the tests that need no broker, subprocess or browser (not the CI gate)"
	@echo "make check-ha  the discovery against a real Home Assistant (pinned, cached in ~/.cache/edge-fer/ha-venv)"
	@echo "make lock   refresh $(CONSTRAINTS) to the newest versions setup.py allows, then check them (check-lock)"
	@echo "make check-arm64   install, demo and tests in a Debian 12 arm64 root under qemu (Pi 4 / Pi 5 CPUs; ~30 min)"

demo: install models
	$(BIN)/edge-fer run $(DEMO_ARGS)

test: install models test-packages lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The integration tests are marked in tests/conftest.py (by fixture use, or by hand).
unit: install models
	$(BIN)/python -m pytest -m "not integration" $(PYTEST_ARGS)

arch:
	@case "$(ARCH)" in armv6l|armv7l|armhf|arm) \
	  echo "edge-fer needs a 64-bit OS: this is $(ARCH) (32-bit ARM), for which LiteRT (ai-edge-litert), numpy and"; \
	  echo "OpenCV publish no wheels on PyPI. On a Raspberry Pi 3, 4, 5 or Zero 2 W install 64-bit Raspberry Pi OS"; \
	  echo "(Bookworm, arm64) and run make again; see README.md, Boards."; exit 1;; esac

$(BIN)/python: | arch
	@$(PYTHON) -m venv $(VENV_FLAGS) $(VENV) 2>/dev/null || { \
	  echo "python3 venv support is missing: installing python3-venv from Debian's packages"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv && \
	  $(PYTHON) -m venv $(VENV_FLAGS) $(VENV); }
	$(BIN)/python -m pip install --quiet --upgrade pip

# `onnx` (onnxruntime) for the ONNX back-end's parity tests, which must run, never skip.
# -c: the versions in $(CONSTRAINTS), so that an install tomorrow is the install measured today.
$(VENV)/.installed: $(BIN)/python setup.py $(CONSTRAINTS)
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[dev,eval,onnx]'
	@touch $@

install: $(VENV)/.installed

models: install
	$(BIN)/edge-fer models fetch

# What the tests need from Debian: a real broker (each test starts its own on a free port), a
# headless browser for the dashboard test, and real camera streams: GStreamer's RTSP server (with
# python3-gi, H.264 from x264) and ffmpeg serving MJPEG over HTTP.
TEST_DEBS := mosquitto chromium ffmpeg python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base \
  gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
test-packages:
	@missing=""; for deb in $(TEST_DEBS); do \
	  dpkg-query -W -f='$${Status}' $$deb 2>/dev/null | grep -q "ok installed" || missing="$$missing $$deb"; \
	done; \
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

# Refresh the lock: the newest versions setup.py's ranges allow, resolved in a fresh venv, then
# the whole test suite and the demo bench in another fresh venv installed from the new lock.
LOCK_VENV ?= /tmp/edge-fer-lock-venv
# Python 3.10 (JetPack 6) gets its own resolution, by that interpreter.
PYTHON310 ?= python3.10
lock: | arch
	rm -rf $(LOCK_VENV) && $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install --quiet '.[dev,eval,onnx]'
	PYTHON310=$(PYTHON310) $(LOCK_VENV)/bin/python firmware_config/lock.py write $(LOCK_VENV)/bin/python $(CONSTRAINTS)
	$(MAKE) check-lock

# The lock in a fresh venv: the test suite, the demo bench (RSS must stay <= 120 MB; frames/s
# printed) and arm64 wheels for Python 3.11 (Raspberry Pi OS 12) and 3.10 (JetPack 6).
CHECK_VENV ?= /tmp/edge-fer-check-venv
check-lock:
	rm -rf $(CHECK_VENV)
	$(MAKE) VENV=$(CHECK_VENV) test
	$(CHECK_VENV)/bin/edge-fer bench --frames 2000 --json > $(CHECK_VENV)/bench.json
	$(CHECK_VENV)/bin/python firmware_config/lock.py bench $(CHECK_VENV)/bench.json --max-rss-mb 120
	$(CHECK_VENV)/bin/python firmware_config/lock.py wheels $(CONSTRAINTS)

check-arm64:
	firmware_config/arm64/check.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
