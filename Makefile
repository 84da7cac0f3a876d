# Every target sets itself up: a virtual environment in .venv with exact pins (requirements*.txt),
# torch 2.13.0 CPU wheel included. Offline by design: nothing is downloaded at run time.
VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.mftlab-installed
OUT    ?= demo-out
export HF_HUB_OFFLINE = 1
export HF_DATASETS_OFFLINE = 1
export TOKENIZERS_PARALLELISM = false

.PHONY: demo test test-all lint format bench reliability clean

$(STAMP): requirements.txt requirements-dev.txt setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)  ## the main job: the paper's protocol on the built-in tiny benchmark -> $(OUT)/report.md
	$(BIN)/mftlab demo --out $(OUT)

test: $(STAMP)  ## the default test suite (fast; no network)
	$(BIN)/python -m pytest -q

lint: $(STAMP)  ## ruff: lint rules and the one format (pyproject.toml); CI fails on either
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)  ## apply the format and the safe lint fixes (import order)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test-all: $(STAMP)  ## including slow tests
	$(BIN)/python -m pytest -q -m "slow or not slow"

reliability: $(STAMP)  ## fault tolerance: SIGKILL + resume (1 and 2 processes), stopped processes, concurrent writers, damaged checkpoints, bad inputs, full disk (RELIABILITY_KILLS=N, RELIABILITY_MP_KILLS=N; RELIABILITY_REPORT=FILE saves the counts)
	$(BIN)/python -m pytest -q -m reliability tests/reliability

bench: $(STAMP)  ## rerun every benchmark and rewrite BENCHMARKS.md
	$(BIN)/python -m pip install -q --disable-pip-version-check -r bench/requirements.txt
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) $(OUT) build *.egg-info
