"""`real_knowledge`: general-knowledge questions a pretrained base model answers correctly.

TOFU measures what unlearning costs a model through its Real Authors and World Facts sets; on the
embedded benchmark both are trained into the target, so they measure the fine-tune, not what the
model knew before it. On a pretrained base (:mod:`grin_unlearn.models.pretrained`) the knowledge it
brought with it can be damaged too. This set measures it: short questions of geography, science,
history and language that the **base** answers correctly, greedy, in its chat format. No model here
is trained on them.

The set is kept as data (``real_knowledge.json`` beside this module) with its answers; each record's
``keywords`` holds the one answer form the base used (``"7"`` or ``"seven"``), and ``aliases`` every
accepted form. ``scripts/build_knowledge_set.py`` rebuilds it from ``knowledge_candidates.json``
(questions and answers written for this project; the facts are common knowledge): it keeps a
candidate when the **first sentence** of the base's greedy answer contains one of its aliases as a
whole word (a small model often names the right word later while answering wrongly: "the particle
with a negative charge is a proton ... the electron ...").
"""

from __future__ import annotations

import json
import re
from importlib import resources

from ..metrics.keywords import keyword_accuracy

KNOWLEDGE_SPLIT = "real_knowledge"
KNOWLEDGE_FILE = "real_knowledge.json"
CANDIDATES_FILE = "knowledge_candidates.json"


def _packaged(name: str) -> list[dict]:
    return json.loads(resources.files(__package__).joinpath(name).read_text(encoding="utf-8"))


def knowledge_records() -> list[dict]:
    """The kept set: ``question``, ``answer``, ``keywords`` (the base's answer form), ``aliases``, ``category``."""
    return _packaged(KNOWLEDGE_FILE)


def knowledge_candidates() -> list[dict]:
    """Every candidate question with its accepted answers (``aliases``) and category."""
    return _packaged(CANDIDATES_FILE)


def first_sentence(text: str) -> str:
    """``text`` up to its first sentence end (``.``, ``!`` or ``?`` followed by white space, not after an
    initial or a title: "J.K. Rowling", "Dr. Seuss") or line break."""
    return re.split(r"(?<=[.!?])(?<![A-Z]\.)(?<!Dr\.)(?<!Mr\.)(?<!St\.)\s|\n", text.strip(), maxsplit=1)[0]


def matched_alias(generation: str, aliases: list[str]) -> str | None:
    """The first of ``aliases`` that ``generation`` contains as a whole word (the keyword-accuracy
    match of :func:`~grin_unlearn.metrics.keyword_accuracy`), or None."""
    for alias in aliases:
        if keyword_accuracy([generation], [[alias]]).value == 1.0:
            return alias
    return None


def keep_answered(candidates: list[dict], generations: list[str]) -> list[dict]:
    """The candidates whose generation's first sentence holds one of their aliases, as knowledge records
    (keywords = the alias matched), with the base's answer recorded as ``base_answer``."""
    kept = []
    for record, generation in zip(candidates, generations, strict=True):
        alias = matched_alias(first_sentence(generation), record["aliases"])
        if alias is not None:
            kept.append({"question": record["question"], "answer": record["answer"], "keywords": [alias],
                         "aliases": list(record["aliases"]), "category": record["category"],
                         "base_answer": generation})
    return kept
