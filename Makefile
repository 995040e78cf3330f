# The README's two commands. Each sets up .venv itself on a fresh clone.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TINY := .cache/tiny
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
# DeepSpeed compiles its C++ ops on first use (about 30 s); kept here, they compile once.
export TORCH_EXTENSIONS_DIR ?= $(abspath .cache/torch_extensions)

.PHONY: setup demo test tiny lint clean browser

# torch first, pinned: on a CPU machine a bare `torch` requirement pulls a multi-GB CUDA build.
# On a GPU machine install the CUDA build of your choice first (README); TORCH_SPEC overrides.
TORCH_SPEC ?= torch==2.13.0

$(BIN)/ruinstruct: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[train,deepspeed,dask,dev]"
	touch $@

setup: $(BIN)/ruinstruct

$(TINY)/.done: $(BIN)/ruinstruct
	$(BIN)/ruinstruct make-tiny --out $(TINY)
	touch $@

tiny: $(TINY)/.done

demo: setup tiny
	$(BIN)/ruinstruct run --config configs/tiny.yaml

# The e2e browser test drives Debian's chromium through Playwright (never a downloaded browser).
# Installed here when missing and apt can (root, or passwordless sudo); otherwise that test skips.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else \
	      echo "chromium missing and apt needs root: the browser test will skip"; exit 0; fi; \
	    $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { $$SUDO apt-get update -q >/dev/null 2>&1 && \
	      $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1; } || \
	    echo "chromium could not be installed: the browser test will skip"; }

test: setup tiny browser
	RUINSTRUCT_TINY_DIR=$(abspath $(TINY)) $(BIN)/python -m pytest -m "not gpu" $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check src tasks flows tests bench tools

clean:
	rm -rf runs .cache .pytest_cache
