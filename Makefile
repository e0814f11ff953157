# The two commands of the README: `make demo` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV ?= .venv
# On the development machines torch 2.13.0 (CPU) lies on local disk; elsewhere pip fetches it.
# Override for a CUDA machine, e.g. `make install TORCH_SPEC='torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128'`.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
SOURCES := $(shell find server client shared -name '*.py' 2>/dev/null) pyproject.toml

.PHONY: install demo test test-quick bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.deps: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -qq -e ".[dev,simulation]" --config-settings editable_mode=strict
	touch $@

# Strict editable installs link each module at install time: relink when a source file changes.
$(VENV)/.package: $(VENV)/.deps $(SOURCES)
	$(BIN)/pip install -qq --no-deps -e . --config-settings editable_mode=strict
	touch $@

install: $(VENV)/.package

demo: install
	$(BIN)/organfed demo

test: install
	$(BIN)/python -m pytest -q

test-quick: install
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) build dist *.egg-info
