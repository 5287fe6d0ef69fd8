# The two commands of the README: `make demo` (the main job) and `make test`.
# Each creates .venv/ when missing, installs the project with pinned dependencies,
# builds the C++ bit kernels once (cached; the runtime falls back to torch ops without a compiler),
# and installs Debian's Fashion-MNIST package when the data is absent and apt is usable.

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
export HF_HUB_OFFLINE := 1
export MPLBACKEND := Agg

.PHONY: demo test lint install system bench

$(STAMP): pyproject.toml requirements.lock | system
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev]'
	@echo "building the packed 1-bit kernels (C++, cached under ~/.cache/bnext/kernels) ..."
	$(PY) -m bnext.deploy.build
	@touch $(STAMP)

install: $(STAMP)

# Debian packages the commands need and this machine lacks: the dataset, a C++ compiler
# and ninja for the packed kernels (without them the runtime falls back to torch ops), and
# SIMDe's headers, with which the tests check the AVX-512 kernel paths on CPUs without AVX-512.
system:
	@missing=""; \
	[ -f $(FMNIST) ] || missing="$$missing dataset-fashion-mnist"; \
	command -v g++ >/dev/null 2>&1 || missing="$$missing g++"; \
	command -v ninja >/dev/null 2>&1 || missing="$$missing ninja-build"; \
	[ -f /usr/include/simde/x86/avx512.h ] || missing="$$missing libsimde-dev"; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && apt-get install -y -qq $$missing) >/dev/null; \
	  elif command -v sudo >/dev/null 2>&1; then \
	    (sudo apt-get update -qq && sudo apt-get install -y -qq $$missing) >/dev/null; \
	  else \
	    echo "note: apt is not usable to install$$missing; dependent tests are skipped"; \
	  fi; \
	fi

demo: $(STAMP)
	$(PY) -m bnext.demo

# The optional peer runtimes (OpenVINO, ONNX Runtime: ~90 MB, ~30 s) so that their tests run too;
# without them (no index reachable) those tests skip.
test: $(STAMP)
	@$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev,bench]' \
	  || echo "note: the bench extra (openvino, onnxruntime) is not installed; its tests skip"
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m pytest -q

# Benchmarks, run on purpose: they rewrite the tracked files under benchmarks/results/.
bench: $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev,bench]'
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/deploy_bench.py
	$(PY) benchmarks/peer_inference.py
	$(PY) -m bnext.demo --output runs/demo-bench --record benchmarks/results/demo_fashion_mnist.json
