# edge: every target sets up .venv on first use. Run `make help` for the list.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
EDGE   := $(BIN)/edge
# RUN, TARGET and build/$(TARGET)/model_int8.tflite are edge/paths.py's defaults (tests/test_paths.py
# keeps them in step).
RUN    ?= default
TARGET ?= cortex-m
PORT   ?=
# make optimize: the battery device, lifetime target, wall-clock budget and worker processes of `edge search`
DEVICE ?= camera-trap-nrf52840
LIFETIME ?= 1y
BUDGET ?= 30m
WORKERS ?= 1
FRAMING ?= console
STAMP  := $(VENV)/.installed

# 0 = no time limit: NNCF compiles its C++ extension on first use (cached in ~/.cache/nncf); its default
# limit (60 s) is too short on 2 cores: the first compile took longer and failed with a timeout.
export NNCF_EXTENSION_LOAD_TIMEOUT ?= 0
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: help setup test test-slow lint typecheck data train prune qat export verify battery-gate optimize report chromium flash bench devices bench-all clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -c constraints.txt --pre -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install everything (once)

test: $(STAMP) chromium  ## run the test suite (fast tests, ~10 min on 2 cores)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP) chromium  ## run the slow end-to-end tests too
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)  ## ruff
	$(BIN)/ruff check .

typecheck: $(STAMP)  ## mypy on the package ([tool.mypy] in pyproject.toml)
	$(BIN)/python .ci/typecheck.py

data: $(STAMP)  ## build the default data set
	$(EDGE) data --run $(RUN)

train: $(STAMP)  ## train the default ViT-lite (runs/$(RUN)/)
	$(EDGE) train --run $(RUN)

prune: $(STAMP)  ## structured pruning of the trained model
	$(EDGE) prune --run $(RUN)

qat: $(STAMP)  ## quantisation-aware training of the pruned model
	$(EDGE) qat --run $(RUN)

export: $(STAMP)  ## the whole default pipeline for TARGET (default cortex-m) -> build/$(TARGET)/
	$(EDGE) run --run $(RUN) --target $(TARGET)

verify: $(STAMP)  ## check build/$(TARGET)/model_int8.tflite (full-integer, TFLM ops, arena)
	$(EDGE) verify --full-integer build/$(TARGET)/model_int8.tflite

report: $(STAMP)  ## runs/$(RUN)/report/report.html (+ .md, .json) from the run as it stands
	$(EDGE) report --run $(RUN)

optimize: $(STAMP)  ## search the model for TARGET, DEVICE, LIFETIME within BUDGET (runs/$(RUN)/search/, docs/search.md)
	$(EDGE) search --run $(RUN) --target $(TARGET) --device $(DEVICE) --min-lifetime $(LIFETIME) --budget $(BUDGET) \
	  --workers $(WORKERS)

# The report's browser test opens report.html in Debian's chromium. Installed once, quietly; as root (CI) or
# with sudo. Without either the test is skipped locally (CI sets EDGE_REQUIRE_BROWSER=1: missing = failure).
chromium:  ## install Debian's chromium for the report's browser test (once; root or sudo)
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; \
	  else echo "make chromium: not root and no sudo: the report's browser test will be skipped" >&2; exit 0; fi; \
	  $$SUDO apt-get update -qq >/dev/null && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

battery-gate: $(STAMP)  ## the CI battery gate on the default run
	$(EDGE) battery check --run $(RUN)

flash: $(STAMP)  ## upload build/$(TARGET)/model_int8.tflite to the board on PORT (FRAMING=console|raw)
	$(EDGE) flash --port $(PORT) --framing $(FRAMING) --model build/$(TARGET)/model_int8.tflite

bench: $(STAMP)  ## benchmark the board on PORT (MLPerf Tiny protocol)
	$(EDGE) bench --port $(PORT) --model build/$(TARGET)/model_int8.tflite

devices: $(STAMP)  ## list serial ports
	$(EDGE) devices

bench-all: $(STAMP)  ## run every benchmark script in bench/
	for script in bench/*.py; do $(BIN)/python $$script || exit 1; done

clean:  ## remove runs/ and build/ (keeps .venv)
	rm -rf runs build
