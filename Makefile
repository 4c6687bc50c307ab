# Two commands do everything on a fresh machine (Python >= 3.10 and pip):
#   make lab    set up .venv, then start JupyterLab and print the URL to open
#   make test   set up .venv, fetch and verify the data (make data), then run every test
# Both are idempotent: set-up is redone only when pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NB     ?= notebooks/*.ipynb

.PHONY: setup lab data test execute assignments site site-serve grade clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python >= 3.10 is needed; run: make PYTHON=python3.11 ...")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[lab,test,site]"
	@touch $@

# JupyterLab opens no browser itself (so it works in containers, over SSH and as root,
# where --allow-root is added): it prints the URL to open once the server answers.
# make lab PORT=8890 picks another port; make lab IP=0.0.0.0 listens beyond this machine.
PORT ?= 8888
IP   ?= 127.0.0.1
define LAB_READY
import os, sys, time, urllib.request
url, status, parent = sys.argv[1], sys.argv[2], os.getppid()
while os.getppid() == parent:
    try:
        urllib.request.urlopen(status, timeout=2).close()
    except Exception:
        time.sleep(0.5)
        continue
    print(f"\n    JupyterLab is running. Open this URL in your browser:\n\n    {url}\n"
          "\n    (Ctrl-C here stops it.)\n", flush=True)
    break
endef
export LAB_READY

lab: setup
	@export JUPYTER_TOKEN=$$($(BIN)/python -c 'import secrets; print(secrets.token_hex(24))'); \
	base="http://127.0.0.1:$(PORT)"; \
	$(BIN)/python -c "$$LAB_READY" "$$base/lab/tree/notebooks?token=$$JUPYTER_TOKEN" \
	    "$$base/api/status?token=$$JUPYTER_TOKEN" & \
	exec $(BIN)/jupyter lab --no-browser --ip=$(IP) --port=$(PORT) --ServerApp.port_retries=0 \
	    --ServerApp.root_dir=. $(if $(filter 0,$(shell id -u)),--allow-root)

# Download what is missing and verify every data file (one progress bar per file, then a
# table); instant when all is there. Without network: see README, "Restricted networks".
data: setup
	@$(BIN)/python -m utils.data

test: setup data
	$(BIN)/python -m pytest -n 2 --dist loadfile

# For authors: re-execute notebooks in place in a fresh kernel (make execute NB=notebooks/01_autograd.ipynb).
execute: setup
	$(BIN)/python -m utils.notebooks execute $(NB)

# For instructors: regenerate assignments/ from solutions/ (the single source).
assignments: setup
	$(BIN)/python -m utils.assignments

# The course website: every lecture and assignment, built from the executed notebooks into
# _site/ (warnings are errors); make site-serve shows it on http://127.0.0.1:8000
# (make site-serve SITE_PORT=8001 for another port).
SITE_PORT ?= 8000
site: setup
	@$(BIN)/python -c 'import sphinx' 2>/dev/null || { echo "the site needs Python >= 3.11 (Sphinx 9): make clean && make site PYTHON=python3.11"; exit 1; }
	$(BIN)/python docs/build.py

site-serve: site
	@echo "serving _site/ on http://127.0.0.1:$(SITE_PORT)/ (Ctrl-C stops it)"
	$(BIN)/python -m http.server --bind 127.0.0.1 --directory _site $(SITE_PORT)

# For instructors: grade a folder of submitted notebooks in a sandbox (needs bubblewrap):
#   make grade A=07 SUBMISSIONS=path/to/folder [OUT=grades-07] [GRADE_ARGS="--timeout 600"]
A   ?=
OUT ?= grades-$(A)
grade: setup
	@test -n "$(A)" -a -n "$(SUBMISSIONS)" || { echo "usage: make grade A=07 SUBMISSIONS=folder [OUT=folder]"; exit 2; }
	$(BIN)/python -m utils.grading $(A) "$(SUBMISSIONS)" --out "$(OUT)" $(GRADE_ARGS)

clean:
	rm -rf $(VENV)
