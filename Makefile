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

.PHONY: env lab lint notebooks test test-slow benchmarks-doc mutation
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

# Mutation testing (not in CI): mutmut mutates the released modules, the paper CSS / CSG, the views and the presets
# one change at a time and runs the tests that cover each ([tool.mutmut] in pyproject.toml); the report, with every
# equivalent survivor and its reason (tools/mutation_equivalents.yaml), is written to docs/mutation.md.
mutation: $(STAMP)
	$(PY) -m pip install -c constraints.txt -e '.[mutation]'
	HF_HUB_OFFLINE=1 $(VENV)/bin/mutmut run
	$(PY) tools/mutation_report.py > docs/mutation.md.tmp; status=$$?; mv docs/mutation.md.tmp docs/mutation.md; \
	  cat docs/mutation.md | head -12; exit $$status
