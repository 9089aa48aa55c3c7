# `make demo` and `make test` each create/refresh .venv, install, then act.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) -m experiments.demo

# Two workers, whole modules each (--dist loadfile keeps a module's fixtures and compiled programs in
# one process): the suite is compile-bound and single-threaded in places, so 2 cores halve it.
PYTEST_WORKERS ?= 2

test: install lint
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile --durations=15 tests

# ruff is pinned in the test extras: one style, enforced wherever `make test` runs (CI included).
lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: install
	$(PY) -m experiments.bench --quick

clean:
	rm -rf $(VENV) runs build *.egg-info
