# Two entry points (see README): `make demo` and `make test`.
# Each creates .venv if needed and installs what it needs; re-running is cheap.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test test-slow lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# A stamp per install flavour so that editing pyproject.toml triggers a re-install.
$(VENV)/.stamp-base: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.stamp-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.stamp-base

demo: $(VENV)/.stamp-base
	$(BIN)/qhead demo

test: $(VENV)/.stamp-test
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest

test-slow: $(VENV)/.stamp-test
	$(BIN)/python -m pytest -m slow

lint: $(VENV)/.stamp-test
	$(BIN)/ruff check src tests benchmarks

bench: $(VENV)/.stamp-test
	$(BIN)/python benchmarks/simulator.py
	$(BIN)/python benchmarks/kernel_profile.py
	$(BIN)/python benchmarks/train_step.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info
