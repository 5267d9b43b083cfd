# kubepulse: `make demo` shows it working, `make test` proves it. Both start from a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STACK := deploy/local/stack

.PHONY: install stack-up stack-down stack-status test unit demo bench schemas wheel clean

install: $(VENV)/.installed

# Reinstall when the dependency list or the pinned constraints change.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	touch $@

stack-up:
	$(STACK) up

stack-down:
	$(STACK) down

stack-status:
	$(STACK) status

# The whole suite, against the real Kafka and Elasticsearch the stack starts.
# pytest exits 5 when it collects nothing, which fails this target too.
test: install stack-up
	$(PY) -m pytest $(PYTEST_ARGS)

# Unit tests only (no servers needed).
unit: install
	$(PY) -m pytest -m "not integration" $(PYTEST_ARGS)

demo: install stack-up
	$(VENV)/bin/kubepulse demo

bench: install stack-up
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

schemas: install
	$(VENV)/bin/kubepulse schema export schemas/

wheel: install
	$(PY) -m build --wheel --outdir dist/ .

clean:
	rm -rf $(VENV) dist build *.egg-info .pytest_cache
