# threatscope: `make demo` sets everything up and produces a report; `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench lint install clean

$(STAMP): pyproject.toml setup.py threatscope/_native.c threatscope/_patterns.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/threatscope demo -o demo-out

test: $(STAMP)
	$(BIN)/ruff check threatscope tests bench
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/windows.py

lint: $(STAMP)
	$(BIN)/ruff check threatscope tests bench

clean:
	rm -rf $(VENV) demo-out threatscope-ws *.egg-info
