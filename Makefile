# Two entry points (see README): `make notebooks` runs the main job, `make test` runs the tests.
# Each creates the virtual environment in .venv when it is missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[test]'
	$(PY) -m s2c2seg.lab
	touch $(STAMP)

.PHONY: env notebooks test lab
env: $(STAMP)

notebooks: $(STAMP)
	$(VENV)/bin/s2c2seg notebooks run

# JupyterLab on the notebooks; .py notebooks open as notebooks (setting written by `python -m s2c2seg.lab`).
lab: $(STAMP)
	$(PY) -m s2c2seg.lab
	$(VENV)/bin/jupyter lab notebooks

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -n 2 -q
