"""Byte-compile every module a grin-unlearn command imports, once, into the usual ``__pycache__``.

    .venv/bin/python scripts/compile_imports.py

The setup step installs with ``pip --no-compile`` (compiling all of torch and transformers took half of
the install), and where ``PYTHONDONTWRITEBYTECODE`` is set, as on this project's machines, Python never
writes the bytecode of what it imports: every command then compiled about 3,200 source files at start,
about 6 s (docs/performance.md). Python still reads bytecode that exists, so this compiles just the
modules the commands load (every command module, the model code of the embedded models, the real
model's loader) and nothing else. Run by ``make setup``; safe to run again.
"""

from __future__ import annotations

import importlib
import py_compile
import sys

MODULES = (
    "grin_unlearn.cli", "grin_unlearn.commands.eval", "grin_unlearn.commands.unlearn", "grin_unlearn.commands.finetune",
    "grin_unlearn.commands.select", "grin_unlearn.commands.demo", "grin_unlearn.commands.tune",
    "grin_unlearn.experiments.real_benchmark", "grin_unlearn.evaluation.tofu", "grin_unlearn.training.trainer",
    "transformers.models.llama.modeling_llama", "transformers.models.auto.tokenization_auto",
    "transformers.generation.utils", "transformers.trainer", "accelerate", "safetensors.torch", "scipy.stats",
    "grin_unlearn.evaluation.lm_eval", "rouge_score.rouge_scorer", "rouge_score.tokenizers",  # ROUGE imports nltk (250 modules)
)


def main() -> int:
    for name in MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            continue  # an optional extra that is not installed
    done = failed = 0
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path or not path.endswith(".py"):
            continue
        try:
            py_compile.compile(path, doraise=True)
            done += 1
        except (py_compile.PyCompileError, OSError):
            failed += 1
    print(f"byte-compiled {done} imported modules" + (f" ({failed} could not be written)" if failed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
