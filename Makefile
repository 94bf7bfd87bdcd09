# threatscope: `make demo` sets everything up and produces a report; `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-spark fuzz crash stress bench lint install clean train-ps eval-ps

$(STAMP): pyproject.toml setup.py threatscope/_native.c threatscope/_patterns.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,spark]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/threatscope demo -o demo-out

test: $(STAMP)
	$(BIN)/ruff check threatscope tests bench
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile --no-loadscope-reorder -m "not spark_stages"

# the Spark engine stage by stage against DuckDB (several minutes of local Spark)
test-spark: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile tests/spark tests/detect/test_sigma_conformance.py tests/detect/test_correlation.py

# the fuzz tests of make test, long: thousands of random inputs per parser and for the Sigma
# compiler (THREATSCOPE_FUZZ_EXAMPLES=N for more); findings are replayed from .hypothesis/
fuzz: $(STAMP)
	THREATSCOPE_FUZZ=long $(BIN)/python -m pytest -q -p no:cacheprovider -n 2 tests/fuzz --hypothesis-show-statistics

# SIGKILL at random points of ingest, detect, enrich and report, several hundred times; each
# complete rerun must equal the uninterrupted run (tests/faults/harness.py)
KILLS ?= 300
crash: $(STAMP)
	THREATSCOPE_KILLS=$(KILLS) THREATSCOPE_FULL_DISKS=8 $(BIN)/python -m pytest -q -s -p no:cacheprovider tests/faults

# memory on a generated 10 GiB stream through `ingest -`, with the default 32 MiB blocks
stress: $(STAMP)
	THREATSCOPE_STRESS_GIB=10 THREATSCOPE_STRESS_BLOCK_MIB=32 $(BIN)/python -m pytest -q -s -p no:cacheprovider tests/faults/test_memory.py

bench: $(STAMP)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/windows.py
	$(BIN)/python bench/powershell.py
	$(BIN)/python bench/enrich.py
	$(BIN)/python bench/report.py
	$(BIN)/python bench/serve.py
	$(BIN)/python bench/spark.py

# PowerShell obfuscation classifier: retrain the shipped model / cross-source evaluation table
# (data: PS_DATA, default ../shared/data/powershell; numpy needed, in the [test] extra)
PS_DATA ?= ../shared/data/powershell
train-ps: $(STAMP)
	$(BIN)/python -m threatscope.powershell.train --data $(PS_DATA)

eval-ps: $(STAMP)
	$(BIN)/python -m threatscope.powershell.train --eval --data $(PS_DATA)

lint: $(STAMP)
	$(BIN)/ruff check threatscope tests bench

clean:
	rm -rf $(VENV) demo-out threatscope-ws *.egg-info
