# grin-unlearn: `make demo` and `make test` each set up .venv on a fresh machine, then run.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test setup bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first with the exact pin: a bare `torch` would pull a multi-GB CUDA build here.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/grin-unlearn demo

test: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 -q

bench: $(STAMP)
	$(PY) bench/bench_influence.py
	$(PY) bench/bench_selection.py

clean:
	rm -rf $(VENV) runs .cache
