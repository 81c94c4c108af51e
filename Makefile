# txdsl: the two commands (see README).
#
#   make run    set up .venv and build the bundled GPT-2 spec (inductor backend)
#   make test   set up .venv and run the whole test suite
#
# Set-up is idempotent: the environment is rebuilt only when pyproject.toml or
# this Makefile changes. torch is pinned to the CPU build and installed before
# anything that depends on it, so no dependency can pull a multi-GB CUDA build.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
TORCH  := torch==2.13.0
STAMP  := $(VENV)/.txdsl-installed

.PHONY: run test setup clean bench

run: setup
	$(VENV)/bin/txdsl check specs
	$(VENV)/bin/txdsl build specs/gpt2.tx --backend inductor

test: setup
	$(PY) -m pytest -q -n auto

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(TORCH)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[hf,dev,onnx]"
	touch $(STAMP)

bench: setup   ## side-by-side benchmarks against Hugging Face and x-transformers (bench/README.md)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[hf,bench]"
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) artifacts build *.egg-info
