# Two commands on a fresh clone:
#   make reproduce   install, then run the embedded smoke reproduction (no download)
#   make test        install, then run the test suite
VENV ?= .venv
PYTHON ?= python3
# TORCH_INDEX=https://download.pytorch.org/whl/cpu installs the CPU-only torch wheels (no CUDA libraries)
TORCH_INDEX ?=
BIN = $(VENV)/bin

.PHONY: setup reproduce test

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip "setuptools<81" wheel
	$(BIN)/python -m pip install torch==2.14.1 torchvision==0.29.1 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -e ".[test]"
	$(BIN)/python -m ipykernel install --user --name ufd --display-name "Python (ufd)"
	touch $@

setup: $(VENV)/.installed

reproduce: setup
	$(BIN)/ufd reproduce --profile smoke

test: setup
	$(BIN)/pytest
