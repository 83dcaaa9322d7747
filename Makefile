# Two commands for a newcomer (see README.md):
#   make run    set everything up (once), then train/reuse the ANN, convert it and simulate it
#   make test   set everything up (once), then run the test suite
# Set-up is idempotent: the venv is rebuilt only when pyproject.toml changes, and the
# Fashion-MNIST Debian package is installed only when its files are missing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FASHION_MNIST := /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz
SUDO := $(shell [ "$$(id -u)" = 0 ] || command -v sudo)

.PHONY: setup data run test
setup: $(STAMP) data

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, at the version on this machine's disk, so nothing pulls another build
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

data:
	@if [ -e $(FASHION_MNIST) ]; then :; \
	elif command -v apt-get >/dev/null; then \
		$(SUDO) apt-get install -y dataset-fashion-mnist || \
		{ $(SUDO) apt-get update && $(SUDO) apt-get install -y dataset-fashion-mnist; }; \
	else echo "Fashion-MNIST missing and no apt-get: see README (data.root / data.download=true)"; fi

run: setup
	$(BIN)/python run.py

test: setup
	$(BIN)/python -m pytest
