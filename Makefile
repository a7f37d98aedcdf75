# Two user-facing targets: `make demo` and `make test`. Each one sets up everything it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test setup system-deps bench lint

system-deps:
	@command -v dot >/dev/null 2>&1 && [ -d /usr/share/datasets/fashion-mnist ] || \
	  ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q graphviz dataset-fashion-mnist)

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,oracle]'
	touch $@

setup: system-deps $(VENV)/.installed

demo: setup
	$(VENV)/bin/convgraph demo

test: setup
	$(PY) -m pytest -n 2 tests

bench: setup
	$(VENV)/bin/convgraph bench --quick

lint: setup
	$(VENV)/bin/ruff check .
