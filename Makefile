# The two commands of the README: `make demo` (the main job) and `make test`.
# Each creates .venv/ when missing, installs the project with pinned dependencies,
# and installs Debian's Fashion-MNIST package when the data is absent and apt is usable.

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
export HF_HUB_OFFLINE := 1
export MPLBACKEND := Agg

.PHONY: demo test lint install data bench

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

data:
	@if [ ! -f $(FMNIST) ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null; \
	  elif command -v sudo >/dev/null 2>&1; then \
	    (sudo apt-get update -qq && sudo apt-get install -y -qq dataset-fashion-mnist) >/dev/null; \
	  else \
	    echo "note: Fashion-MNIST not installed and apt is not usable; tests that need it are skipped"; \
	  fi; \
	fi

demo: $(STAMP) data
	$(PY) -m bnext.demo

test: $(STAMP) data
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m pytest -q

bench: $(STAMP) data
	$(PY) benchmarks/train_throughput.py
