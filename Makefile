# Developer commands. Every target uses the project's virtual environment ($(VENV)); `make install` creates it.
SHELL := /bin/bash
VENV ?= .venv
PYTHON := $(VENV)/bin/python
# The CPU build of torch: installed only when the environment has no torch at all.
TORCH_SPEC ?= torch==2.13.0
PYTEST_WORKERS ?= 2


.PHONY: install test test-all lint format type docs ci train

install:
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "$(TORCH_SPEC)"
	$(PYTHON) -m pip install -e ".[tests]"

# Fast suite: everything but the tests marked slow (pyproject.toml's addopts deselects them).
test:
	$(PYTHON) -m pytest -n $(PYTEST_WORKERS)

# Slow tests included: the empty marker expression replaces the default "not slow".
test-all:
	$(PYTHON) -m pytest -n $(PYTEST_WORKERS) -m ""

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

format:
	$(PYTHON) -m ruff check --fix .
	$(PYTHON) -m ruff format .

type:
	$(PYTHON) -m mypy sb3_pgnotes examples

# The documentation site, warnings as errors; open docs/_build/html/index.html.
docs:
	$(PYTHON) -m sphinx -W --keep-going -b html docs docs/_build/html

ci: lint type docs test

# The README quickstart: REINFORCE on CartPole-v1 with the packaged hyperparameters.
train:
	$(PYTHON) -m sb3_pgnotes train --algo reinforce --env CartPole-v1 -P --eval-freq 10000 --eval-episodes 10
