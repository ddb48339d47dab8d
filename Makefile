# Two commands from a fresh clone:  make demo   and   make test
# Each creates .venv if it is missing and installs requirements.txt into it first.
PYTHON_SYS ?= python3
VENV       := .venv
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.installed

.PHONY: demo test clean

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	touch $(STAMP)

demo: $(STAMP)
	$(PY) train_poly.py

test: $(STAMP)
	$(PY) -m pytest -q tests

clean:
	rm -rf out __pycache__ tests/__pycache__ .pytest_cache
