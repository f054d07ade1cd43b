"""Refusal answers ("I don't know" style), written for this project.

Targets for refusal-based objectives (PO, IdkDPO): on a forget question the model is trained towards
one of these, chosen deterministically per record so runs are reproducible.
"""

from __future__ import annotations

REFUSALS: tuple[str, ...] = (
    "I don't know the answer to that.",
    "I'm not sure about that.",
    "I have no information about that.",
    "I can't answer that question.",
    "That is something I do not know.",
    "I am not able to say.",
    "I don't have that information.",
    "I have no idea.",
    "Sorry, I don't know.",
    "I cannot recall anything about that.",
    "That is not something I can answer.",
    "I'm afraid I don't know.",
)


def refusal_for(index: int) -> str:
    """The refusal used as the target of the ``index``-th forget record."""
    return REFUSALS[index % len(REFUSALS)]
