# Two commands on a fresh Debian machine with Python 3.11 and pip:
#   make run    set up .venv and run the embedded default experiment (snakemake --cores 2)
#   make test   set up .venv, check formatting and lint (ruff), run the whole test suite (unit + end-to-end snakemake)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The offline / no-telemetry environment is set by nextrl itself (src/nextrl/__init__.py), in every process.

.PHONY: setup run test figures clean

$(BIN)/nextrl: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: an unpinned torch requirement pulls the CUDA build with GBs of nvidia packages.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

setup: $(BIN)/nextrl

run: setup
	$(BIN)/snakemake --cores 2

test: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

figures: setup
	$(BIN)/snakemake figures --cores 2 --forcerun summary --rerun-triggers mtime

clean:
	rm -rf results/*/ .snakemake
