# Two commands do everything on a fresh machine (Python >= 3.10 and pip):
#   make lab    set up .venv, then open JupyterLab on notebooks/
#   make test   set up .venv, then run the whole test suite
# Both are idempotent: set-up is redone only when pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NB     ?= notebooks/*.ipynb

.PHONY: setup lab test execute assignments clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python >= 3.10 is needed; run: make PYTHON=python3.11 ...")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[lab,test]"
	@touch $@

lab: setup
	$(BIN)/jupyter lab notebooks/

test: setup
	$(BIN)/python -m pytest -n 2 --dist loadfile

# For authors: re-execute notebooks in place in a fresh kernel (make execute NB=notebooks/01_autograd.ipynb).
execute: setup
	$(BIN)/python -m utils.notebooks execute $(NB)

# For instructors: regenerate assignments/ from solutions/ (the single source).
assignments: setup
	$(BIN)/python -m utils.assignments

clean:
	rm -rf $(VENV)
