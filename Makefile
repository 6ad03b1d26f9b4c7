# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= data
OUT ?= runs/demo
export DATA_DIR

# Re-install whenever pyproject.toml or this file changes.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | cksum | cut -d' ' -f1)
# pyproject's [tool.ascend-road] no-deps (tf-keras: with its deps it would bring a second TensorFlow),
# read by the shell when the line runs (the venv's python does not exist when make expands a recipe)
NODEPS := $$($(BIN)/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["tool"]["ascend-road"]["no-deps"])')

.PHONY: setup test test-fast lint demo bench bench-smoke clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade "pip>=23" "setuptools>=64"
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/pip install -q --no-deps $(NODEPS)
	rm -f $(VENV)/.installed-*
	touch $@

setup: $(STAMP)

test: setup
	$(BIN)/python -m pytest tests

test-fast: setup
	$(BIN)/python -m pytest tests -m "not slow" -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

demo: setup
	$(BIN)/python demo/road.py --data-dir $(DATA_DIR) --out $(OUT)

# Every figure of the README's performance table, on an idle machine (37 min here, 2026-12-03).
bench: setup
	$(BIN)/python bench/run.py --data-dir $(DATA_DIR) --results bench/results
	$(BIN)/python bench/table.py --results bench/results

# Every area in a reduced form (minutes): shows the machinery works, publishes nothing.
bench-smoke: setup
	$(BIN)/python bench/run.py --data-dir $(DATA_DIR) --results runs/bench/smoke_results --smoke
	$(BIN)/python bench/table.py --results runs/bench/smoke_results --smoke

clean:
	rm -rf $(VENV) runs
