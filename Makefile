# nbpipe developer entry points. `make demo` and `make test` work on a fresh machine:
# they create .venv, install Python/Node/Debian dependencies, then run.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
comma := ,

.PHONY: setup setup-dist lock demo test test-fast test-k8s bench clean system-deps node-deps lab-build

# uv is pinned: it is the tool that reads the lock, so it must not move under us either.
UV_VERSION := 0.13.9
# Universal locks (every platform, Python >= 3.10): the versions `make setup` installs and the
# tests ran with. `make lock` is the one deliberate way to move them; pyproject.toml keeps ranges.
LOCK := requirements.lock
KFP_LOCK := requirements-kfp.lock
LOCK_PY := 3.10
EXTRAS := demo,test,postgres

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "uv==$(UV_VERSION)"

# The editable install also builds the JupyterLab extension (needs Node.js; jlpm comes with the build,
# and installs the Node packages from yarn.lock). Every Python package comes from $(LOCK).
$(STAMP): pyproject.toml $(LOCK) package.json yarn.lock $(VENV)/bin/python | node-deps
	$(UV) pip install --python $(PY) --compile-bytecode --constraint $(LOCK) -e ".[$(EXTRAS)]"
	touch $(STAMP)

# The installed copy of the Lab extension (the wheel's shared-data, a copy, not a link) follows the
# sources: after a `git pull` that changed labextension/ or the run view, `make setup` rebuilds the
# bundle and refreshes the copy Lab serves. On a fresh clone the install above just built it: no rebuild.
LAB_BUILD := nbpipe/labextension/package.json
LAB_INSTALLED := $(VENV)/share/jupyter/labextensions/nbpipe
LAB_STAMP := $(VENV)/.installed-lab
LAB_SRC := $(wildcard labextension/src/*.ts labextension/style/* nbpipe/widgets/run_view*.js \
  nbpipe/widgets/run_view*.css) package.json yarn.lock tsconfig.json
$(LAB_BUILD): $(LAB_SRC) | $(STAMP)
	$(VENV)/bin/jlpm build
	touch $(LAB_BUILD)
$(LAB_STAMP): $(LAB_BUILD) $(STAMP)
	rm -rf $(LAB_INSTALLED)/static
	mkdir -p $(LAB_INSTALLED) && cp -R nbpipe/labextension/. $(LAB_INSTALLED)/
	cp labextension/install.json $(LAB_INSTALLED)/install.json
	touch $(LAB_STAMP)

setup: $(STAMP) $(LAB_STAMP)

# torch (CPU) for the distributed-step tests only, so `make demo` does not pay for it. This machine
# kind keeps the CPU wheel of the locked version on disk; elsewhere uv takes PyPI's (a CUDA build).
DIST_STAMP := $(VENV)/.installed-dist
DIST_LOCK := requirements-dist.lock
TORCH_WHEELS := /opt/wheels
$(DIST_STAMP): $(STAMP) requirements-dist.in $(DIST_LOCK)
	$(UV) pip install --python $(PY) --constraint $(LOCK) --constraint $(DIST_LOCK) \
	  $(if $(wildcard $(TORCH_WHEELS)/torch-*+cpu-*.whl),--find-links $(TORCH_WHEELS)) -r requirements-dist.in
	touch $(DIST_STAMP)

setup-dist: $(DIST_STAMP)

# Refresh the locks to the newest versions pyproject.toml allows; commit the result after `make test`.
lock: $(VENV)/bin/python
	$(UV) pip compile pyproject.toml $(foreach e,$(subst $(comma), ,$(EXTRAS)),--extra $(e)) \
	  --universal --python-version $(LOCK_PY) --upgrade -q -o $(LOCK)
	$(UV) pip compile requirements-kfp.in --universal --python-version $(LOCK_PY) --upgrade -q -o $(KFP_LOCK)
	$(UV) pip compile requirements-dist.in --constraint $(LOCK) --universal --python-version $(LOCK_PY) \
	  --upgrade -q -o $(DIST_LOCK)
	@echo "Locks refreshed: review 'git diff *.lock', run 'make test', then commit."

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

test: setup setup-dist system-deps
	$(PY) -m pytest -q --durations=25

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

# The `k8s` suite against a real kube-apiserver + controller-manager 1.20 (../shared/k8s-rig), as the
# runner's least-privilege ServiceAccount, then its Role checked against the audit log. The rig is
# compiled once per machine into K8S_RIG_DIR, outside the clone (5-13 min the first time), reused after.
K8S_RIG_DIR ?= /var/cache/nbpipe/k8s-rig
test-k8s: setup
	K8S_RIG_DIR=$(K8S_RIG_DIR) $(PY) tests/k8s_rig/run.py

bench: setup
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
