# Two commands on a fresh machine:  `make demo` (set up + run the search)  and  `make test`.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# test processes (pytest-xdist): each runs torch on one thread, so two use both cores of a
# 2-core machine (TEST_WORKERS=1 for one process, as when a test is debugged)
TEST_WORKERS ?= 2

.PHONY: setup demo test clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned, so the project's torch range is already met by the CPU build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/shufflenas search --out runs/demo

test: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS)

clean:
	rm -rf $(VENV) runs .pytest_cache
