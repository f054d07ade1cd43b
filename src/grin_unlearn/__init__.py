"""grin-unlearn: GRIN machine unlearning (arXiv 2508.06467) for Hugging Face causal LMs.

The public API, one function per step of the method:

* :func:`score_influence` — per-weight scores (GRIN: ``|G_f| / (|G_r| + ε)``, or a baseline scorer);
* :func:`select_weights` — the exact global top-``p`` fraction as boolean masks;
* :func:`inject_noise` — ``θ_i ← θ_i + N(0, σ²)`` on the selected weights;
* :func:`unlearn` — the whole pipeline with masked fine-tuning and the run folder;
* :func:`evaluate` — TOFU-style metrics (ROUGE-L, probability, truth ratio, forget quality, utility).
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "score_influence": ("influence", "score_influence"),
    "select_weights": ("selection", "select_top_fraction"),
    "inject_noise": ("noise", "inject_noise"),
    "unlearn": ("unlearn", "unlearn"),
    "evaluate": ("evaluate", "evaluate"),
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    # Lazy: `import grin_unlearn` (and the CLI's --help) stays fast; torch loads on first use.
    if name in _EXPORTS:
        module, attribute = _EXPORTS[name]
        return getattr(import_module(f"{__name__}.{module}"), attribute)
    raise AttributeError(f"module 'grin_unlearn' has no attribute {name!r}")
