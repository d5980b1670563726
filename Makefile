# nbpipe developer entry points. `make demo` and `make test` work on a fresh machine:
# they create .venv, install Python/Node/Debian dependencies, then run.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup demo test test-fast bench clean system-deps node-deps lab-build

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip uv

# The editable install also builds the JupyterLab extension (needs Node.js; jlpm comes with the build).
$(STAMP): pyproject.toml package.json yarn.lock $(VENV)/bin/python | node-deps
	$(UV) pip install --python $(PY) --compile-bytecode -e ".[demo,test,postgres]"
	touch $(STAMP)

setup: $(STAMP)

# Node.js builds the lab extension; installed from Debian only when missing.
node-deps:
	@if ! command -v node >/dev/null 2>&1; then \
	  echo "Installing Node.js (Debian package) to build the JupyterLab extension..."; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nodejs npm >/dev/null; \
	fi

# Rebuild the lab extension after editing labextension/ or nbpipe/widgets/run_view*.
lab-build: setup
	$(VENV)/bin/jlpm build

# Debian packages the tests need: chromium (browser tests) and postgresql (tests/test_postgres.py
# starts its own server from /usr/lib/postgresql/*/bin); each skipped when already there.
system-deps:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  echo "Installing chromium (Debian package) for browser tests..."; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; \
	fi
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  echo "Installing postgresql (Debian package) for the PostgreSQL metadata tests..."; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql >/dev/null; \
	fi

demo: setup
	$(PY) -m nbpipe.examples.digits

test: setup system-deps
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

bench: setup
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
