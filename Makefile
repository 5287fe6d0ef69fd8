# The two commands of the README: `make demo` (the main job) and `make test`.
# Each creates .venv/ when missing, installs the C++ runtime (runtime/, built with CMake) and the project
# with pinned dependencies, and installs the Debian packages they need when apt is usable: Fashion-MNIST,
# a C++ compiler, CMake and Ninja; for the tests also SIMDe (the AVX-512 paths emulated on any CPU), clang
# (the libFuzzer run over the .bnx loader), and the AArch64 cross compiler with qemu-user (the NEON path).

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
RUNTIME_SOURCES := $(shell find runtime -name '*.cpp' -o -name '*.h' -o -name '*.py' -o -name 'CMakeLists.txt' -o -name 'pyproject.toml' | grep -v '/tests/\|/fuzz/')
BUILD := build
export HF_HUB_OFFLINE := 1
export MPLBACKEND := Agg

.PHONY: demo test lint install system system-test runtime-test runtime-test-aarch64 fuzz bench format-check

$(STAMP): pyproject.toml requirements.lock $(RUNTIME_SOURCES) | system
	@test -x $(PY) || python3 -m venv $(VENV)
	@echo "building and installing the C++ runtime (runtime/ -> bnext_runtime) ..."
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock ./runtime
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# Installs the missing Debian packages among $(1) (name:probe-path pairs), when apt is usable.
define apt_install
	@missing=""; for pair in $(1); do \
	  [ -e "$${pair#*:}" ] || missing="$$missing $${pair%%:*}"; done; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && apt-get install -y -qq $$missing) >/dev/null; \
	  elif command -v sudo >/dev/null 2>&1; then \
	    (sudo apt-get update -qq && sudo apt-get install -y -qq $$missing) >/dev/null; \
	  else \
	    echo "note: apt is not usable to install$$missing; dependent steps are skipped"; \
	  fi; \
	fi
endef

system:
	$(call apt_install,dataset-fashion-mnist:$(FMNIST) g++:/usr/bin/g++ cmake:/usr/bin/cmake ninja-build:/usr/bin/ninja)

system-test: system
	$(call apt_install,libsimde-dev:/usr/include/simde/x86/avx512.h clang:/usr/bin/clang++ libclang-rt-dev:/usr/share/doc/libclang-rt-dev g++-aarch64-linux-gnu:/usr/bin/aarch64-linux-gnu-g++ qemu-user:/usr/bin/qemu-aarch64 clang-format:/usr/bin/clang-format)

demo: $(STAMP)
	$(PY) -m bnext.demo

# The runtime's C++ tests, natively and with every x86 intrinsic emulated (SIMDe: the AVX-512 paths on
# any CPU), then a bounded libFuzzer run over the loader.
runtime-test: system-test
	cmake -S runtime -B $(BUILD)/runtime -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build $(BUILD)/runtime -j2
	$(BUILD)/runtime/runtime_tests
	@if [ -f /usr/include/simde/x86/avx512.h ]; then \
	  cmake -S runtime -B $(BUILD)/runtime-emulated -G Ninja -DBNEXT_EMULATE_X86=ON >/dev/null && \
	  cmake --build $(BUILD)/runtime-emulated -j2 && $(BUILD)/runtime-emulated/runtime_tests; \
	else echo "note: SIMDe absent: the emulated x86 kernel tests are skipped"; fi

# The runtime cross-built for AArch64 (NEON path), its tests under qemu-aarch64, whole-model cases from PyTorch.
runtime-test-aarch64: system-test $(STAMP)
	PYTHON=$(PY) JOBS=2 bash runtime/tests/run_aarch64.sh $(BUILD)/runtime-aarch64

fuzz: system-test
	@if command -v clang++ >/dev/null 2>&1; then bash runtime/fuzz/run_fuzz.sh $(BUILD)/fuzz 60; \
	else echo "note: clang absent: the fuzz run is skipped"; fi

# The optional peer runtimes (OpenVINO, ONNX Runtime: ~90 MB, ~30 s) so that their tests run too;
# without them (no index reachable) those tests skip.
test: $(STAMP) runtime-test runtime-test-aarch64 fuzz
	@$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev,bench]' \
	  || echo "note: the bench extra (openvino, onnxruntime) is not installed; its tests skip"
	$(PY) -m ruff check src tests benchmarks runtime/python
	@$(MAKE) --no-print-directory format-check
	$(PY) -m pytest -q

# The C++ style (runtime/.clang-format), checked with the clang-format it was written with (Debian's 14): another
# version may lay code out differently, so it is skipped there with a note.
CXX_SOURCES = $(shell git ls-files 'runtime/*.cpp' 'runtime/*.h' 'runtime/*.c' 'benchmarks/*.cpp' 'benchmarks/*.h')
format-check:
	@if clang-format --version 2>/dev/null | grep -q 'version 14\.'; then \
	  clang-format --dry-run --Werror $(CXX_SOURCES) && echo "clang-format: $(words $(CXX_SOURCES)) C++ files in style"; \
	else echo "note: clang-format 14 absent: the C++ style check is skipped"; fi

# Benchmarks, run on purpose: they rewrite the tracked files under benchmarks/results/.
bench: $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev,bench]'
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/deploy_bench.py
	$(PY) benchmarks/peer_inference.py
	$(PY) -m bnext.demo --output runs/demo-bench --record benchmarks/results/demo_fashion_mnist.json
