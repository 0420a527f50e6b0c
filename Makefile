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

demo: setup
	ENTROPY_WATCH_DIR=$(STORE) $(BIN)/python examples/watch_loop.py --run demo-watch --steps 120
	$(BIN)/entropy-watch --store $(STORE) ls
	$(BIN)/entropy-watch --store $(STORE) show demo-watch

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
