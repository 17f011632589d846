# Everyday commands. `make test` is the README's test command (CI: .ci/run).
# PostgreSQL server binaries must be installed; the tests start their own server.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PIP    := $(BIN)/python -m pip --disable-pip-version-check --quiet

.PHONY: venv test lint fmt check demo bench clean

venv: $(STAMP)

# Re-install only when pyproject.toml changed (or the venv is new).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "'$(PYTHON) -m venv' failed. On Debian/Ubuntu: apt-get install python3-venv;" \
	       "or choose another interpreter: make PYTHON=/path/to/python3.11" >&2; exit 1; }
	$(PIP) install --progress-bar off -e '.[test,dev]'
	@touch $@

# Two workers (pytest-xdist), each with its own server: much of the suite waits on
# subprocesses, locks and signals. The suite starts the CLI ≈ 950 times: compile
# vezamig's bytecode first, or each start compiles it again when the shell has
# PYTHONDONTWRITEBYTECODE set (≈ 50 ms each).
test: venv
	$(BIN)/python -m compileall -q vezamig
	$(BIN)/pytest -q -n 2

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

check: lint test

demo: venv
	$(BIN)/python -m vezamig.demo

bench: venv
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
