# entropy_watch: one Makefile. `make demo` and `make test` do all the set-up on a fresh machine.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
STORE ?= ./ew_runs

.PHONY: setup demo test test-fast lint format bench app clean

setup: $(STAMP)

# torch comes first from the local CPU wheel (torch==2.13.0); a plain `torch` requirement resolved before it is
# installed would pull a multi-GB CUDA build. The extras' `torch>=2.4` is then already satisfied.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

EW := $(BIN)/entropy-watch --store $(STORE)

# The main job: GRPO and REPO-R from one SFT checkpoint on the tiny preset (CPU, ~2-4 min), then the detector on
# both (GRPO is flagged as collapsing; REPO-R stays clean), then how to open the app. The demo owns the run names
# sft-s0, grpo-s0 and repo-r-s0 in the store and replaces them on every run.
demo: setup
	rm -rf $(STORE)/run=sft-s0 $(STORE)/run=grpo-s0 $(STORE)/run=repo-r-s0
	$(EW) compare --algos grpo,repo-r --preset tiny --steps 250 --lr 6e-4 --probe-steps 0 --no-precision-check --jobs 2
	$(EW) ls
	$(EW) alerts --write grpo-s0 || echo "^ exit status $$? (0 clean, 1 warning, 2 critical): what a CI job would see"
	$(EW) alerts --write repo-r-s0 || echo "^ exit status $$? (0 clean, 1 warning, 2 critical)"
	$(EW) show grpo-s0
	@echo
	@echo "See it in the app:  $(EW) app    (or: make app; it binds to 127.0.0.1)"

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow and not e2e and not dist"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

app: setup
	$(BIN)/entropy-watch --store $(STORE) app

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
