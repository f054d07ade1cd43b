"""GRIN step 1: which weights are eligible, their full-set gradients, and per-weight scores.

* :mod:`.eligibility` — the eligible parameters (block weight matrices by default);
* :mod:`.gradients` — signed fp32 full-set gradients ``G_f``, ``G_r`` (sharded over processes);
* :mod:`.scorers` — the scorer registry: ``grin`` and the baselines;
* :mod:`.influence` — :func:`score_influence`, the step as one call.
"""

from .eligibility import DEFAULT_EXCLUDE, eligible_parameters
from .gradients import accumulate_example_gradients, accumulate_gradients, selected_gradient_stats, subsample
from .influence import InfluenceResult, score_influence
from .scorers import DEFAULT_EPS, DEFAULT_WAGLE_MU, SCORERS, ScoringContext, get_scorer, register_scorer

__all__ = ["DEFAULT_EXCLUDE", "DEFAULT_EPS", "DEFAULT_WAGLE_MU", "SCORERS", "InfluenceResult", "ScoringContext",
           "accumulate_example_gradients", "accumulate_gradients", "eligible_parameters", "get_scorer",
           "register_scorer", "score_influence", "selected_gradient_stats", "subsample"]
