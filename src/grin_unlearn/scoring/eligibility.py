"""Which weights GRIN may touch: the eligible parameters, decided once per run.

By default the weight matrices of the transformer blocks; embeddings, ``lm_head`` and norms are opt-in
by pattern. Scoring, selection, noise and the masked optimizer all work on this one set.
"""

from __future__ import annotations

import re

import torch

from ..errors import UserInputError
from ..models import BLOCK_PATTERN

# Removed from the default set (matched with re.search on the parameter name). Opt back in with
# ``include``: an include pattern adds a parameter even when one of these matches it.
DEFAULT_EXCLUDE: tuple[str, ...] = (
    r"embed",  # embed_tokens, embed_positions, embeddings
    r"lm_head",
    r"norm",  # input_layernorm, post_attention_layernorm, final_layernorm, RMSNorm
    r"(?:^|\.)ln_",  # GPT-2 ln_1, ln_2, ln_f
    r"(?:^|\.)(?:wte|wpe)\.",  # GPT-2 token / position embeddings
)


def eligible_parameters(
    model: torch.nn.Module,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
) -> dict[str, torch.nn.Parameter]:
    """The parameters whose weights GRIN may select, in ``model.named_parameters()`` order.

    Default set (the weight matrices of the transformer blocks): every 2-D parameter whose name
    carries a block index (``BLOCK_PATTERN``: ``.layers.N.``, ``.h.N.``, ``.blocks.N.``, ...) and that
    matches none of ``DEFAULT_EXCLUDE`` (embeddings, lm_head, norms).

    ``include``: regex patterns (``re.search`` on the name) that ADD parameters of any shape, wherever
    they live, e.g. ``["embed_tokens", "lm_head"]``. Each pattern must match at least one parameter,
    so a typo is an error instead of a silent no-op.
    ``exclude``: regex patterns that remove parameters from the result (applied last, so they also
    win over ``include``). A single string is accepted as a one-pattern list.

    ``requires_grad`` is not looked at; tied weights appear once (``named_parameters`` dedups them).
    Raises :class:`UserInputError` for an invalid pattern or an empty result.
    """
    include_res = _compile_patterns(include, "include")
    exclude_res = _compile_patterns(exclude, "exclude")
    default_exclude_res = [re.compile(p) for p in DEFAULT_EXCLUDE]

    named = list(model.named_parameters())
    for pattern in include_res:
        if not any(pattern.search(name) for name, _ in named):
            raise UserInputError(f"include: pattern {pattern.pattern!r} matches no parameter name of the model")

    chosen: dict[str, torch.nn.Parameter] = {}
    for name, param in named:
        by_default = (
            param.dim() == 2
            and BLOCK_PATTERN.search(name) is not None
            and not any(p.search(name) for p in default_exclude_res)
        )
        included = any(p.search(name) for p in include_res)
        excluded = any(p.search(name) for p in exclude_res)
        if (by_default or included) and not excluded:
            chosen[name] = param
    if not chosen:
        raise UserInputError(
            "include/exclude: no eligible parameter left (expected 2-D weights inside transformer blocks "
            f"named like '.layers.N.', or include patterns that match; include={include!r}, exclude={exclude!r})"
        )
    return chosen


def _compile_patterns(patterns: list[str] | str | None, what: str) -> list[re.Pattern[str]]:
    if patterns is None:
        return []
    if isinstance(patterns, str):
        patterns = [patterns]
    compiled = []
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise UserInputError(f"{what}: expected regex strings, got {pattern!r}")
        try:
            compiled.append(re.compile(pattern))
        except re.error as err:
            raise UserInputError(f"{what}: {pattern!r} is not a valid regular expression ({err})") from None
    return compiled
