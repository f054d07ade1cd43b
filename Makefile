# grin-unlearn: `make demo` and `make test` each set up .venv on a fresh machine, then run.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test setup bench gpu-check clean

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

# On a CUDA machine (no Hub access needed): GRIN's speed and memory on a random 1B Llama, one table +
# gpu_check.json, under 5 minutes on one H100. Without CUDA it says so and exits 2.
gpu-check: $(STAMP)
	$(PY) bench/gpu_check.py --out gpu_check.json

clean:
	rm -rf $(VENV) runs .cache
