# The README's two commands. `make test` builds its own virtualenv, so a fresh clone needs
# nothing but python3.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo lint typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: lint typecheck unit

# The main job: an embedded collector on a free loopback port with SQLite in ./aicm-demo-data,
# a realistic workload through Tracker, then cost reports and delivery health.
# `make demo SERVE=1` then keeps serving the dashboard until Ctrl-C.
demo: $(STAMP)
	$(BIN)/aicm-manual demo --data-dir aicm-demo-data --schemas schemas $(if $(SERVE),--serve)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

# pytest exits 5 when it collects nothing; make treats that as a failure, as it should.
unit: $(STAMP)
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python benchmarks/validation.py
	$(BIN)/python benchmarks/delivery.py
	$(BIN)/python benchmarks/batch.py
	$(BIN)/python benchmarks/llm.py
	$(BIN)/python benchmarks/money.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
