# Two commands on a fresh clone:
#   make reproduce   install, then run the embedded smoke reproduction (no download)
#   make test        install, then lint (ruff) and run the test suite
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin
TORCH_PINS = torch==2.14.1 torchvision==0.29.1
# Where torch comes from. Empty: PyPI (or your pip configuration), whose Linux wheels carry the CUDA
# libraries (several GB); on Linux without an NVIDIA driver the install says so before it starts.
# TORCH_INDEX=https://download.pytorch.org/whl/cpu: the CPU-only wheels.
# The choice is remembered in $(VENV)/.torch-index; naming another index later reinstalls torch
# from it in the existing $(VENV) (TORCH_INDEX=https://pypi.org/simple goes back to PyPI's wheels).
TORCH_STAMP = $(VENV)/.torch-index
CPU_INDEX = https://download.pytorch.org/whl/cpu
TORCH_INDEX ?= $(shell cat $(TORCH_STAMP) 2>/dev/null)
NO_NVIDIA_GPU = $(and $(filter Linux,$(shell uname -s)),$(if $(wildcard /proc/driver/nvidia/version),,yes))

.PHONY: setup reproduce test

$(VENV)/.installed: pyproject.toml
	@if [ -n "$(NO_NVIDIA_GPU)" ] && [ -z "$(TORCH_INDEX)" ]; then \
	  echo "note: no NVIDIA GPU here, yet torch's CUDA wheels (several GB) are about to be installed."; \
	  echo "      Without CUDA, stop (Ctrl-C) and run: make $(or $(MAKECMDGOALS),setup) TORCH_INDEX=$(CPU_INDEX)"; \
	  sleep 10; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip "setuptools<81" wheel
	$(BIN)/python -m pip install $(TORCH_PINS) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	echo '$(TORCH_INDEX)' > $(TORCH_STAMP)
	$(BIN)/python -m pip install -e ".[test]"
	$(BIN)/python -m ipykernel install --user --name ufd --display-name "Python (ufd)"
	touch $@

# An existing $(VENV) whose torch came from another index: torch and torchvision are reinstalled
# from TORCH_INDEX (the second pip call adds the dependencies that build needs, e.g. CUDA's).
setup: $(VENV)/.installed
	@if [ "$$(cat $(TORCH_STAMP) 2>/dev/null)" != '$(TORCH_INDEX)' ]; then \
	  echo "TORCH_INDEX is now '$(TORCH_INDEX)': reinstalling $(TORCH_PINS) in $(VENV)" && \
	  $(BIN)/python -m pip install --force-reinstall --no-deps $(TORCH_PINS) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) && \
	  $(BIN)/python -m pip install $(TORCH_PINS) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) && \
	  echo '$(TORCH_INDEX)' > $(TORCH_STAMP); \
	fi

reproduce: setup
	$(BIN)/ufd reproduce --profile smoke

test: setup
	$(BIN)/ruff check ufd_lib tests benchmarks
	$(BIN)/pytest
