# porter — the two commands a newcomer runs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: demo test bench deps venv clean reliability-table

$(BIN)/porter: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

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
