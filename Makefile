# Two entry points (see README): `make notebooks` runs the main job, `make test` runs the linter and the tests.
# Each creates the virtual environment in .venv when it is missing, with the tested versions (constraints.txt).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -c constraints.txt -e '.[test,notebooks]'
	$(PY) -m s2c2seg.lab
	touch $(STAMP)

.PHONY: env lab lint notebooks test test-slow benchmarks-doc
env: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

notebooks: $(STAMP)
	$(PY) tools/timed.py make notebooks -- $(VENV)/bin/s2c2seg notebooks run

# JupyterLab on the notebooks; .py notebooks open as notebooks (setting written by `python -m s2c2seg.lab`).
lab: $(STAMP)
	$(PY) -m s2c2seg.lab
	$(VENV)/bin/jupyter lab notebooks

# the fast tier (everything but the tests marked slow); `make test-slow` runs the slow tier, `.ci/run` runs both
test: lint
	HF_HUB_OFFLINE=1 $(PY) tools/timed.py make test -- $(PY) -m pytest -n 2 -q -m "not slow"

test-slow: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) tools/timed.py make test-slow -- $(PY) -m pytest -n 2 -q -m slow

# docs/benchmarks.md from the benchmarks' JSON results (benchmarks/results/*.json) and notes (benchmarks/notes/*.md)
benchmarks-doc: $(STAMP)
	PYTHONPATH=. $(PY) benchmarks/report.py
