"""grin-unlearn: GRIN machine unlearning (arXiv 2508.06467) for Hugging Face causal LMs.

The public API, one function per step of the method:

* :func:`score_influence` — per-weight scores (GRIN: ``|G_f| / (|G_r| + ε)``, or a baseline scorer);
* :func:`select_weights` — the exact global top-``p`` fraction as boolean masks;
* :func:`inject_noise` — ``θ_i ← θ_i + N(0, σ²)`` on the selected weights;
* :func:`unlearn` — the whole pipeline with masked fine-tuning and the run folder;
* :func:`make_masked_optimizer` — a mask as an optimizer for any ``transformers.Trainer`` or loop;
* :func:`evaluate` — the TOFU metrics as the reference implementation computes them (ROUGE-L,
  probability, truth ratio, forget quality, model utility, PrivLeak).

Each is imported on first use (PEP 562), so ``import grin_unlearn`` and the command line load only
what they use (the Trainer, scipy, datasets are seconds of start-up each).
"""

from __future__ import annotations

import importlib

from ._version import __version__

# public name -> (module, attribute)
_EXPORTS = {"score_influence": (".scoring", "score_influence"),
            "select_weights": (".selection", "select_top_fraction"),
            "inject_noise": (".noise", "inject_noise"),
            "unlearn": (".pipeline", "unlearn"),
            "make_masked_optimizer": (".training.masked_optim", "make_masked_optimizer"),
            "evaluate": (".evaluation", "evaluate")}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'grin_unlearn' has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    value = getattr(importlib.import_module(module, __name__), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
