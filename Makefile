# Short targets; every one installs into .venv first when needed.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.installed-docs
ARGS   ?=
RUNS   ?= $(or $(SPATIALPROBE_RUNS),runs)
# pytest-xdist workers: a crash or hang in one test (a native kernel, a stuck process) costs its worker,
# not the run, and the closing summary line always appears; two also halve the fast suite on 2 cores
TEST_WORKERS ?= 2

.PHONY: install test test-all test-slow train demo report bench gpu-check docs lint clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,optuna,joblib]'
	touch $(STAMP)

test: install            ## fast suite (tests marked slow are skipped)
	$(PY) -m pytest -q -n $(TEST_WORKERS) -m "not slow" $(ARGS)

test-all: install        ## everything, slow tests included
	$(PY) -m pytest -q -n $(TEST_WORKERS) $(ARGS)

test-slow: install       ## only the tests marked slow (CI runs them after make test)
	$(PY) -m pytest -q -n $(TEST_WORKERS) -m slow $(ARGS)

train: install           ## make train ARGS="model=vgg16 method=spatial_shuffle k=5"
	$(PY) -m spatialprobe.train $(ARGS)

demo: install            ## a real small K-sweep on CIFAR-10 on the CPU, ends in the K-curve figure and the results site
	bash sweeps/demo.sh $(ARGS)

report: install          ## the results site: make report ARGS="RUNS_DIR... -o SITE [--tolerance 1.0] [--title T]"
	$(PY) -m spatialprobe.report $(or $(ARGS),$(RUNS)/sweeps -o $(RUNS)/site)

bench: install           ## ratios against baselines measured in the same run
	$(PY) benchmarks/run.py $(ARGS)

gpu-check: install       ## the GPU path end to end: one table, benchmarks/results-gpu.md (no CUDA: one line, exit 0)
	$(PY) benchmarks/gpu_check.py $(ARGS)

docs: $(DOCS_STAMP)      ## the documentation site (mkdocs-material) into site/; strict: a broken link or page fails
	$(PY) -m mkdocs build --strict -d site

$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[docs]'
	touch $(DOCS_STAMP)

lint: install
	$(PY) -m ruff check src tests benchmarks

clean:
	rm -rf runs outputs multirun site .pytest_cache .ruff_cache
