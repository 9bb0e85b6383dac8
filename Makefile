# Developer commands. Every target uses the project's virtual environment ($(VENV)), which the first target run
# creates (and which is brought up to date when pyproject.toml changes).
SHELL := /bin/bash
VENV ?= .venv
PYTHON := $(VENV)/bin/python
# The CPU build of torch: installed only when the environment has no torch at all.
TORCH_SPEC ?= torch==2.13.0
PYTEST_WORKERS ?= 2


INSTALLED := $(VENV)/.installed

.PHONY: install system-deps test test-all lint format type docs ci train

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "$(TORCH_SPEC)"
	$(PYTHON) -m pip install -e ".[tests]"
	touch $@

# The tests start a PostgreSQL server and open the documentation in headless Chromium, both Debian packages:
# installed here when missing (as root; otherwise the command to run is printed).
system-deps:
	@missing=""; \
	compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing="postgresql"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then echo "missing system packages; run: sudo apt-get install$$missing" >&2; exit 1; fi; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

# Fast suite: everything but the tests marked slow (pyproject.toml's addopts deselects them).
test: $(INSTALLED) system-deps
	$(PYTHON) -m pytest -n $(PYTEST_WORKERS)

# Slow tests included: the empty marker expression replaces the default "not slow".
test-all: $(INSTALLED) system-deps
	$(PYTHON) -m pytest -n $(PYTEST_WORKERS) -m ""

lint: $(INSTALLED)
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

format: $(INSTALLED)
	$(PYTHON) -m ruff check --fix .
	$(PYTHON) -m ruff format .

type: $(INSTALLED)
	$(PYTHON) -m mypy sb3_pgnotes examples

# The documentation site, warnings as errors; open docs/_build/html/index.html.
docs: $(INSTALLED)
	$(PYTHON) -m sphinx -W --keep-going -b html docs docs/_build/html

ci: lint type docs test

# The README quickstart: REINFORCE on CartPole-v1 with the packaged hyperparameters.
train: $(INSTALLED)
	$(PYTHON) -m sb3_pgnotes train --algo reinforce --env CartPole-v1 -P --eval-freq 10000 --eval-episodes 10
