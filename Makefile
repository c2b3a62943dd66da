# porter — the two commands a newcomer runs: `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: demo test bench deps venv clean reliability-table

# A regular (not editable) install: setuptools warns on every editable one. It is redone
# whenever porter's sources change, so the installed `porter` command is always current.
$(BIN)/porter: pyproject.toml $(shell find porter -name '*.py')
	@echo "make: installing porter and its dependencies into $(VENV) with pip (about 15 s the first time)"
	@test -x $(BIN)/pip || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q --disable-pip-version-check --upgrade pip 2>&1 | { grep -v "is ignored: it is neither" || true; }
	@$(BIN)/pip install -q --disable-pip-version-check '.[test]' 2>&1 | { grep -v "is ignored: it is neither" || true; }
	@touch $@

venv: $(BIN)/porter

deps:
	bash scripts/install-deps.sh

## demo: export the embedded test registry storage into a docker-loadable archive (no server needed)
demo: venv
	bash scripts/demo.sh

## test: install the services tests run against (as root on Debian), then run pytest
test: deps venv
	$(BIN)/pytest -q

## bench: porter vs skopeo vs curl on local registries, printed as ratios
bench: deps venv
	$(BIN)/python bench/bench.py

## reliability-table: regenerate README's Reliability table from the tests' fault markers
reliability-table: venv
	$(BIN)/python scripts/reliability_table.py --write README.md

clean:
	rm -rf $(VENV) bench-out *.egg-info
