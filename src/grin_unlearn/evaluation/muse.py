"""MUSE's per-set metrics: verbatim and knowledge memorization (ROUGE-L F1) and Min-K% on raw text.

MUSE (Shi et al. 2024, "MUSE: Machine Unlearning Six-Way Evaluation for Language Models", arXiv
2407.06460), as the reference implementation runs it (open-unlearning ``configs/eval/muse.yaml`` and
``configs/eval/muse_metrics/``):

=================  ===========================================================================================
role               metric
=================  ===========================================================================================
``verbmem``        VerbMem: the greedy continuation (128 new tokens) of each forget passage's ``prompt``,
                   ROUGE-L F1 against its ``gt`` (``forget_verbmem_ROUGE``, ``rouge_type: rougeL_f1``)
``knowmem_forget``  KnowMem: greedy answers (32 new tokens, cut at ``\\n\\n``, ``\\nQuestion``, ``Question:``) to
``knowmem_retain``  questions about the forget / retain corpus after the split's in-context examples,
                   ROUGE-L F1 against the answer (``forget_knowmem_ROUGE``, ``retain_knowmem_ROUGE``)
``mia_forget``     Min-K% Prob (k = 0.4) of each raw text (``privleak`` forget / holdout splits): the
``mia_holdout``    input of PrivLeak's AUC (the ``muse`` aggregate)
=================  ===========================================================================================

The cross-set numbers (PrivLeak against the oracle's AUC, utility preservation = KnowMem on the
retain set) are the ``muse`` aggregate of :mod:`.aggregates`. A knowledge question's prompt is its
in-context examples then the question, each pair in the model's prompt format: with the plain
template ``Question: {q}\\nAnswer: `` the reference's base-model prompt
``Question: q1\\nAnswer: a1\\n\\n…Question: q\\nAnswer: `` exactly; with a chat template one user and one
assistant turn per example. Texts are scored BOS first, every token after the first, and Min-K leaves
out the last one, as on the other sets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

from ..data.formatting import PromptFormat, text_ids
from ..errors import UserInputError
from ..metrics import min_k_percent_score, rouge_scores
from ..models import pad_token_id
from .engine import generate_texts, score_examples
from .set_metrics import Output, as_output, register_set_metric, run_protocol

MUSE_ROLES = ("verbmem", "knowmem_forget", "knowmem_retain", "mia_forget", "mia_holdout")
VERBMEM_NEW_TOKENS = 128  # forget_verbmem_ROUGE.yaml
KNOWMEM_NEW_TOKENS = 32  # forget_knowmem_ROUGE.yaml
KNOWMEM_STOPS = ("\n\n", "\nQuestion", "Question:")


def check_muse_records(records: list[dict], role: str, source: str) -> list[dict]:
    """The fields each MUSE role reads: ``prompt``/``gt`` (verbmem), ``question``/``answer`` (+ ``shots``)
    (knowmem), ``text`` (mia)."""
    keys = {"verbmem": ("prompt", "gt"), "knowmem_forget": ("question", "answer"),
            "knowmem_retain": ("question", "answer"), "mia_forget": ("text",), "mia_holdout": ("text",)}[role]
    for index, record in enumerate(records):
        for key in keys:
            if not isinstance(record.get(key), str) or not record[key].strip():
                raise UserInputError(f"{source}: record {index} needs a non-empty string field '{key}' "
                                     f"(MUSE {role} records hold {', '.join(keys)})")
    return records


@dataclass
class MuseSet:
    """What a MUSE set's metrics read; each model pass runs once, on first use."""

    model: object
    tokenizer: object
    records: list[dict]
    role: str
    fmt: PromptFormat
    batch_size: int
    max_length: int

    @cached_property
    def generations(self) -> list[str]:
        if self.role == "verbmem":
            budget = max(1, self.max_length - VERBMEM_NEW_TOKENS)
            prompts = [text_ids(self.tokenizer, r["prompt"])[-budget:] for r in self.records]
            return generate_texts(self.model, self.tokenizer, prompts, VERBMEM_NEW_TOKENS, self.batch_size)
        prompts = [self.fmt.few_shot_prompt_ids(self.tokenizer, [tuple(s) for s in r.get("shots") or []],
                                                r["question"]) for r in self.records]
        return generate_texts(self.model, self.tokenizer, prompts, KNOWMEM_NEW_TOKENS, self.batch_size, KNOWMEM_STOPS)

    @cached_property
    def text_scores(self) -> list:
        examples = []
        for index, record in enumerate(self.records):
            ids = text_ids(self.tokenizer, record["text"])[:self.max_length]
            if len(ids) < 2:
                raise UserInputError(f"MUSE text {index}: too short to score (needs at least 2 tokens)")
            examples.append({"input_ids": ids, "labels": ids})
        return score_examples(self.model, examples, pad_token_id(self.tokenizer), self.batch_size)


def _rouge_f1(s: MuseSet, targets: list[str]) -> Output:
    scores = rouge_scores(s.generations, targets)
    values = [x["rougeL_f1"] for x in scores]
    return {"rouge_l_f1": math.fsum(values) / len(values)}, {"generation": list(s.generations), "rouge_l_f1": values}


@register_set_metric("verbmem_rouge", ("verbmem",))
def _verbmem(s: MuseSet) -> Output:
    return _rouge_f1(s, [r["gt"] for r in s.records])


@register_set_metric("knowmem_rouge", ("knowmem_forget", "knowmem_retain"))
def _knowmem(s: MuseSet) -> Output:
    return _rouge_f1(s, [r["answer"] for r in s.records])


@register_set_metric("text_min_k", ("mia_forget", "mia_holdout"))
def _text_min_k(s: MuseSet) -> Output:
    return as_output(min_k_percent_score([score.token_logps for score in s.text_scores], 0.4))


MUSE_PROTOCOL = ["verbmem_rouge", "knowmem_rouge", "text_min_k"]


def evaluate_muse(model, tokenizer, records: list[dict], role: str, fmt: PromptFormat, batch_size: int,
                  max_length: int = 2048, protocol: list[str] | None = None) -> Output:
    """The metrics of ``protocol`` (default :data:`MUSE_PROTOCOL`) on a MUSE set of ``role``."""
    check_muse_records(records, role, f"MUSE {role} set")
    return run_protocol(MuseSet(model, tokenizer, records, role, fmt, batch_size, max_length), role,
                        MUSE_PROTOCOL if protocol is None else protocol)
