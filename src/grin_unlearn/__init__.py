"""grin-unlearn: GRIN machine unlearning (arXiv 2508.06467) for Hugging Face causal LMs.

The public API, one function per step of the method:

* :func:`score_influence` — per-weight scores (GRIN: ``|G_f| / (|G_r| + ε)``, or a baseline scorer);
* :func:`select_weights` — the exact global top-``p`` fraction as boolean masks;
* :func:`inject_noise` — ``θ_i ← θ_i + N(0, σ²)`` on the selected weights;
* :func:`unlearn` — the whole pipeline with masked fine-tuning and the run folder;
* :func:`make_masked_optimizer` — a mask as an optimizer for any ``transformers.Trainer`` or loop;
* :func:`evaluate` — the TOFU metrics as the reference implementation computes them (ROUGE-L,
  probability, truth ratio, forget quality, model utility, PrivLeak).
"""

from ._version import __version__

# Eager imports on purpose: `unlearn` is also a submodule name, and binding the function here keeps
# `grin_unlearn.unlearn` the function whatever was imported before.
from .evaluation import evaluate  # noqa: E402
from .noise import inject_noise  # noqa: E402
from .scoring import score_influence  # noqa: E402
from .selection import select_top_fraction as select_weights  # noqa: E402
from .training.masked_optim import make_masked_optimizer  # noqa: E402
from .unlearn import unlearn  # noqa: E402

__all__ = ["score_influence", "select_weights", "inject_noise", "unlearn", "make_masked_optimizer", "evaluate",
           "__version__"]
