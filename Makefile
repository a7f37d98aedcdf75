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

# two pytest processes: the suite, then tests/cuda on numba's CUDA simulator (it must be switched on before numba is
# imported, so it cannot share the first process); both always run, and either one failing fails the target.
# --dist worksteal hands each worker a contiguous half of the tests (a file's tests, which JIT the same kernels, stay
# on one worker; the other loads them from numba's disk cache) and rebalances at the end: less JIT done twice than
# the default round-robin, which runs neighbouring tests on both workers at once
test: setup
	@$(PY) -m pytest -n 2 --dist worksteal tests; suite=$$?; \
	NUMBA_ENABLE_CUDASIM=1 $(PY) -m pytest -n 2 --dist worksteal tests/cuda; cuda=$$?; \
	echo "make test: pytest tests exit $$suite, pytest tests/cuda (simulator) exit $$cuda"; \
	[ $$suite -eq 0 ] && [ $$cuda -eq 0 ]

bench: setup
	$(VENV)/bin/convgraph bench --quick

lint: setup
	$(VENV)/bin/ruff check .
