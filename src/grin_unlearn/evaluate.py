"""TOFU evaluation of a causal LM: run the model once per batch, hand the numbers to :mod:`metrics`.

TOFU (Maini et al. 2024, "TOFU: A Task of Fictitious Unlearning for LLMs", arXiv 2401.06121, Sec. 2.2)
defines, per question/answer set:

* **ROUGE-L recall** of the greedy generation against ``answer`` (and keyword accuracy alongside it);
* **Probability** ``P(a|q)^(1/|a|)`` of ``answer`` on forget/retain sets, normalised over the options
  ``P(a|q)^(1/|a|) / sum_{a' in {a} u A_pert} P(a'|q)^(1/|a'|)`` on Real Authors and World Facts;
* **Truth ratio** ``R`` from ``paraphrased_answer`` (``answer`` when absent) against
  ``perturbed_answer``, scored ``min(R, 1/R)`` on the forget set and ``max(0, 1 - R)`` elsewhere;

and across sets **forget quality** (KS-test p-value of the forget-set ``R`` against a retain-only
oracle's) and **model utility** (harmonic mean of probability, ROUGE-L and truth ratio on retain, Real
Authors and World Facts). Added: extraction strength, and membership inference (LOSS, zlib, Min-K%)
of the forget set (members) against the holdout set (non-members), with MUSE's PrivLeak against the
oracle (arXiv 2407.06460).

Every teacher-forced number of a set comes from one pass over the unique (question, answer-text)
sequences of that set, sorted by length and batched with right padding: the same forward gives the
answer log-probs (probability, truth ratio), their per-token values (MIA) and the argmax (extraction
strength). Generation is greedy, batched with left padding. The holdout set exists for membership
inference, so it is scored on ``answer`` alone (probability, extraction strength, MIA): no generation
and no truth ratio. In ``eval.json`` each set's
``metrics["truth_ratio"]`` is the role's TOFU score while ``per_item["truth_ratio"]`` holds the raw
``R_i`` (``None`` for an item without perturbed answers), the input forget quality needs.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from .data.formatting import PadCollator, PromptFormat, encode_example, left_pad_prompts
from .data.records import available_splits, is_hub_id, load_qa_split, load_split, validate_qa_records
from .errors import UserInputError
from .eval_report import OPTION_ROLES, aggregate, compare_table, format_summary, load_eval, save_eval
from .logprobs import IGNORE_INDEX, token_logprobs
from .metrics import (MetricResult, answer_probability, extraction_strength, keyword_accuracy, loss_score,
                      min_k_percent_score, multiple_choice_accuracy, normalized_option_probability, rouge_l_recall,
                      truth_ratio_forget_score, truth_ratio_per_item, truth_ratio_retain_score, zlib_score)

__all__ = ["EvalConfig", "ROLES", "aggregate", "compare_table", "default_roles", "evaluate", "evaluate_set",
           "format_summary", "generate_answers", "load_eval", "load_eval_sets", "save_eval", "score_answers"]

logger = logging.getLogger(__name__)

QA_ROLES = ("forget", "retain", "world_facts", "real_authors", "holdout")
ROLES = QA_ROLES + ("mcq", "text")
# Split names that default_roles picks up when present, per role (TOFU's Hub configs end in _perturbed).
OPTIONAL_SPLITS = {"holdout": ("holdout",), "world_facts": ("world_facts", "world_facts_perturbed"),
                   "real_authors": ("real_authors", "real_authors_perturbed")}
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass
class EvalConfig:
    """How much to evaluate and how.

    Attributes:
        max_new_tokens: greedy generation length for ROUGE-L / keyword accuracy.
        batch_size: sequences per forward pass (teacher forcing) and prompts per generate call.
        max_items: evaluate only the first ``max_items`` records of every set (None: all).
        retain_max_items: cap for the retain set on top of ``max_items`` (None: all). The default 200
            keeps a CPU evaluation of the demo world fast; TOFU scores 400 retain items.
        mia: compute the LOSS / zlib / Min-K% membership scores (and the AUCs across sets).
        generation: generate answers (off: no ROUGE-L, keyword accuracy, nor their utility share).
        min_k: the fraction ``k`` of the Min-K% Prob attack.
    """

    max_new_tokens: int = 32
    batch_size: int = 32
    max_items: int | None = None
    retain_max_items: int | None = 200
    mia: bool = True
    generation: bool = True
    min_k: float = 0.2

    def __post_init__(self):
        for name in ("max_new_tokens", "batch_size", "max_items", "retain_max_items"):
            value = getattr(self, name)
            if value is None and name.endswith("max_items"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise UserInputError(f"--{name.replace('_', '-')}: must be a positive integer, got {value!r}")
        if isinstance(self.min_k, bool) or not isinstance(self.min_k, (int, float)) or not 0 < self.min_k <= 1:
            raise UserInputError(f"min_k: must be a fraction in (0, 1], got {self.min_k!r}")


@dataclass(frozen=True)
class AnswerScore:
    """Teacher-forced scores of one answer given its question (answer tokens only, EOS included)."""

    sum_logp: float  # log π(y|x)
    count: int  # |y|
    token_logps: list[float]  # log π(y_t | x, y_<t) per answer token
    argmax: list[int]  # the model's argmax prediction at each answer position
    labels: list[int]  # the answer tokens y_t

    @property
    def mean_logp(self) -> float:
        return self.sum_logp / max(self.count, 1)


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


@contextmanager
def _eval_mode(model):
    """Eval mode and no autograd for the block; the model's previous mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def _teacher_forced(model, examples: list[dict], pad_id: int, batch_size: int) -> list[AnswerScore]:
    """Scores of encoded examples (``input_ids``/``labels``), longest first so batches pad little."""
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]["input_ids"]))
    collate, device = PadCollator(pad_id), _device(model)
    scores: list[AnswerScore | None] = [None] * len(examples)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        batch = {k: v.to(device) for k, v in collate([examples[i] for i in rows]).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (B, T, V)
        logp, mask = token_logprobs(logits, batch["labels"])  # (B, T-1)
        logp = logp.clamp(max=0.0)  # z_y - logsumexp(z) can round to +1e-8 on a memorised token
        argmax = logits[:, :-1][mask].argmax(dim=-1)  # (N,) answer positions only
        counts = mask.sum(dim=-1).tolist()
        logp, mask, labels = logp.cpu(), mask.cpu(), batch["labels"][:, 1:].cpu()  # (B, T-1)
        for row, (i, predicted) in enumerate(zip(rows, torch.split(argmax.cpu(), counts))):
            m = mask[row]
            scores[i] = AnswerScore(sum_logp=float(logp[row].sum()), count=counts[row],
                                    token_logps=logp[row][m].tolist(), argmax=predicted.tolist(),
                                    labels=labels[row][m].tolist())
    return scores


def score_answers(model, tokenizer, pairs: list[tuple[str, str]], fmt: PromptFormat,
                  batch_size: int) -> dict[tuple[str, str], AnswerScore]:
    """Teacher-forced :class:`AnswerScore` of every unique ``(question, answer)`` pair."""
    unique = list(dict.fromkeys(pairs))
    examples = [encode_example(tokenizer, q, a, fmt) for q, a in unique]
    with _eval_mode(model):
        return dict(zip(unique, _teacher_forced(model, examples, _pad_id(tokenizer), batch_size)))


def generate_answers(model, tokenizer, questions: list[str], fmt: PromptFormat, config: EvalConfig) -> list[str]:
    """Greedy answers to ``questions`` (batched, left-padded prompts; special tokens dropped, stripped)."""
    from transformers import GenerationConfig

    gen_config = GenerationConfig(max_new_tokens=config.max_new_tokens, do_sample=False, num_beams=1,
                                  pad_token_id=_pad_id(tokenizer), eos_token_id=tokenizer.eos_token_id)
    prompts = [fmt.prompt_ids(tokenizer, q) for q in questions]
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    device, answers = _device(model), [""] * len(prompts)
    with _eval_mode(model):
        for start in range(0, len(order), config.batch_size):
            rows = order[start:start + config.batch_size]
            inputs = {k: v.to(device) for k, v in left_pad_prompts([prompts[i] for i in rows], _pad_id(tokenizer)).items()}
            output = model.generate(**inputs, generation_config=gen_config)  # (B, P + new)
            texts = tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
            for i, text in zip(rows, texts):
                answers[i] = text.strip()
    return answers


def _put(metrics: dict, per_item: dict, result: MetricResult, key: str | None = None) -> None:
    metrics[key or result.name] = result.value
    per_item[key or result.name] = result.per_item


def _qa_set(model, tokenizer, records, fmt, config, role, generations) -> tuple[dict, dict]:
    questions = [r["question"] for r in records]
    answers = [r["answer"] for r in records]
    paraphrased = [r.get("paraphrased_answer") or r["answer"] for r in records]
    perturbed = [list(r.get("perturbed_answer") or []) for r in records]
    if role == "holdout":  # only there for membership inference: the answer's log-probs are all it needs
        paraphrased, perturbed, generations = answers, [[] for _ in records], None
        config = replace(config, generation=False)
    pairs = list(zip(questions, answers)) + list(zip(questions, paraphrased))
    pairs += [(q, p) for q, options in zip(questions, perturbed) for p in options]
    scores = score_answers(model, tokenizer, pairs, fmt, config.batch_size)
    gold = [scores[pair] for pair in zip(questions, answers)]
    metrics, per_item = {}, {}
    probability = answer_probability([s.sum_logp for s in gold], [s.count for s in gold])
    _put(metrics, per_item, probability)
    _put(metrics, per_item, extraction_strength([s.argmax for s in gold], [s.labels for s in gold]))

    with_options = [i for i, options in enumerate(perturbed) if options]
    if with_options:
        wrong = [[scores[(questions[i], p)].mean_logp for p in perturbed[i]] for i in with_options]
        ratios = truth_ratio_per_item([scores[(questions[i], paraphrased[i])].mean_logp for i in with_options], wrong)
        tofu_score = truth_ratio_forget_score if role == "forget" else truth_ratio_retain_score
        metrics["truth_ratio"] = tofu_score(ratios.per_item).value
        per_item["truth_ratio"] = [None] * len(records)
        for i, r in zip(with_options, ratios.per_item):
            per_item["truth_ratio"][i] = r
        if role in OPTION_ROLES:
            normalized = normalized_option_probability(
                [probability.per_item[i] for i in with_options], [[math.exp(x) for x in w] for w in wrong])
            metrics[normalized.name] = normalized.value
            per_item[normalized.name] = [None] * len(records)
            for i, p in zip(with_options, normalized.per_item):
                per_item[normalized.name][i] = p

    if config.mia:
        # The scored tokens are the answer's (given the question), so zlib compresses the answer text.
        token_logps = [s.token_logps for s in gold]
        _put(metrics, per_item, loss_score(token_logps))
        _put(metrics, per_item, zlib_score(token_logps, answers))
        _put(metrics, per_item, min_k_percent_score(token_logps, config.min_k))

    if generations is None and config.generation:
        generations = generate_answers(model, tokenizer, questions, fmt, config)
    if generations is not None:
        if len(generations) != len(records):
            raise UserInputError(f"generations: expected one per record ({len(records)}), got {len(generations)}")
        _put(metrics, per_item, rouge_l_recall(generations, answers))
        keywords = [r.get("keywords") or None for r in records]
        _put(metrics, per_item, keyword_accuracy(generations, keywords, answers))
        per_item["generation"] = list(generations)
    return metrics, per_item


def _letter_ids(tokenizer, fmt: PromptFormat, count: int) -> list[int]:
    """Token id of each option letter as the model would emit it after ``Answer:`` (`` A``, or ``A``)."""
    ids = []
    for letter in LETTERS[:count]:
        encoded = tokenizer(("" if fmt.chat_template else " ") + letter, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1:  # the tokenizer splits " A": compare the bare letter instead
            encoded = tokenizer(letter, add_special_tokens=False)["input_ids"]
        ids.append(encoded[-1])
    return ids


def _mcq_set(model, tokenizer, records, fmt, config) -> tuple[dict, dict]:
    """Zero-shot letter-logit accuracy; items with fewer options get -inf for the missing letters."""
    for index, record in enumerate(records):
        choices, answer = record.get("choices"), record.get("answer")
        if not isinstance(record.get("question"), str) or not isinstance(choices, list) or not 2 <= len(choices) <= 26:
            raise UserInputError(f"multiple-choice record {index}: needs a 'question' string and 2-26 'choices'")
        if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
            raise UserInputError(f"multiple-choice record {index}: 'answer' must be an option index, got {answer!r}")
    width = max(len(r["choices"]) for r in records)
    letter_ids = torch.tensor(_letter_ids(tokenizer, fmt, width))
    prompts = []
    for r in records:
        options = "\n".join(f"{LETTERS[j]}. {c}" for j, c in enumerate(r["choices"]))
        ids = fmt.prompt_ids(tokenizer, f"{r['question']}\n{options}")
        prompts.append({"input_ids": ids, "labels": [IGNORE_INDEX] * len(ids)})
    collate, device = PadCollator(_pad_id(tokenizer)), _device(model)
    rows = []
    for start in range(0, len(prompts), config.batch_size):
        batch = {k: v.to(device) for k, v in collate(prompts[start:start + config.batch_size]).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (B, T, V)
        last = batch["attention_mask"].sum(dim=-1) - 1  # (B,) last prompt token (right padding)
        next_token = logits[torch.arange(len(last), device=device), last].float().cpu()  # (B, V)
        rows.append(next_token[:, letter_ids])  # (B, C)
    letter_logits = torch.cat(rows)  # (N, C)
    for i, r in enumerate(records):
        letter_logits[i, len(r["choices"]):] = -math.inf
    metrics, per_item = {}, {}
    _put(metrics, per_item, multiple_choice_accuracy(letter_logits, [r["answer"] for r in records]))
    return metrics, per_item


def _text_set(model, tokenizer, records, fmt, config) -> tuple[dict, dict]:
    """Mean token NLL of raw ``text`` records (every token after the first is scored)."""
    examples = []
    for index, record in enumerate(records):
        if not isinstance(record.get("text"), str) or not record["text"].strip():
            raise UserInputError(f"text record {index}: needs a non-empty string field 'text'")
        bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        ids = (bos + tokenizer(record["text"], add_special_tokens=False)["input_ids"])[:fmt.max_length]
        if len(ids) < 2:
            raise UserInputError(f"text record {index}: too short to score (needs at least 2 tokens)")
        examples.append({"input_ids": ids, "labels": ids})
    scores = _teacher_forced(model, examples, _pad_id(tokenizer), config.batch_size)
    metrics, per_item = {}, {}
    _put(metrics, per_item, loss_score([s.token_logps for s in scores]), key="nll")
    return metrics, per_item


def evaluate_set(model, tokenizer, records: list[dict], fmt: PromptFormat | None = None,
                 config: EvalConfig | None = None, role: str = "retain",
                 generations: list[str] | None = None) -> dict:
    """Evaluate one set; returns ``{"role", "n", "metrics": {name: value}, "per_item": {name: [...]}}``.

    ``generations`` (question/answer roles only) replaces greedy generation with the given answers,
    one per evaluated record, e.g. to score a known generator or reuse earlier generations.
    """
    fmt, config = fmt or PromptFormat(), config or EvalConfig()
    if role not in ROLES:
        raise UserInputError(f"role '{role}': expected one of {', '.join(ROLES)}")
    records = list(records)[:config.max_items]
    if role == "retain":
        records = records[:config.retain_max_items]
    if not records:
        raise UserInputError(f"the {role} set is empty (expected at least one record)")
    with _eval_mode(model):
        if role == "mcq":
            metrics, per_item = _mcq_set(model, tokenizer, records, fmt, config)
        elif role == "text":
            metrics, per_item = _text_set(model, tokenizer, records, fmt, config)
        else:
            validate_qa_records(records, f"{role} set")
            if generations is not None:
                generations = list(generations)[:len(records)]
            metrics, per_item = _qa_set(model, tokenizer, records, fmt, config, role, generations)
    return {"role": role, "n": len(records), "metrics": metrics, "per_item": per_item}


def evaluate(model, tokenizer, sets: dict[str, list[dict]], roles: dict[str, str], fmt: PromptFormat | None = None,
             config: EvalConfig | None = None, oracle: dict | None = None) -> dict:
    """Evaluate every set under its role and aggregate; returns the JSON-able ``eval.json`` dict.

    Args:
        sets: set name -> records. roles: set name -> one of :data:`ROLES` (every set needs one).
        oracle: the eval dict of the retain-only oracle model (:func:`load_eval`), for forget quality
            and PrivLeak; None leaves those None.
    """
    fmt, config = fmt or PromptFormat(), config or EvalConfig()
    if not sets:
        raise UserInputError("no sets to evaluate")
    missing = [name for name in sets if name not in roles]
    if missing:
        raise UserInputError(f"sets without a role: {', '.join(missing)} (roles: {', '.join(ROLES)})")
    results = {}
    for name, records in sets.items():
        start = time.perf_counter()
        try:
            results[name] = evaluate_set(model, tokenizer, records, fmt, config, roles[name])
        except UserInputError as err:
            raise UserInputError(f"set '{name}': {err}") from None
        results[name]["seconds"] = round(time.perf_counter() - start, 3)
        logger.info("evaluated %s (%s, %d items) in %.1fs", name, roles[name], results[name]["n"],
                    results[name]["seconds"])
    return {"sets": results, "aggregates": aggregate(results, oracle),
            "config": {**asdict(config), "prompt_format": asdict(fmt), "oracle": oracle is not None}}


def _available(data: str) -> set[str]:
    if is_hub_id(data):
        try:
            import datasets
            return set(datasets.get_dataset_config_names(data))
        except Exception as err:  # offline or unknown dataset: evaluate forget/retain only
            logger.warning("could not list the configs of %s (%s); evaluating forget and retain only", data, err)
            return set()
    folder = Path(data).expanduser()
    if not folder.is_dir():
        raise UserInputError(f"--data: {folder} is not a folder (expected a folder of <split>.json files or a Hub id like locuslab/TOFU)")
    return set(available_splits(folder))


def default_roles(data: str | Path, forget: str = "forget10", retain: str = "retain90") -> dict[str, str]:
    """Set name -> role: the forget and retain splits, plus holdout / world_facts / real_authors if present."""
    if forget == retain:
        raise UserInputError(f"--forget and --retain name the same split '{forget}'")
    roles = {forget: "forget", retain: "retain"}
    available = _available(str(data))
    for role, candidates in OPTIONAL_SPLITS.items():
        name = next((c for c in candidates if c in available), None)
        if name is not None and name not in roles:
            roles[name] = role
    return roles


def load_eval_sets(data: str | Path, roles: dict[str, str]) -> dict[str, list[dict]]:
    """The records of every set in ``roles`` (question/answer sets validated)."""
    unknown = {name: role for name, role in roles.items() if role not in ROLES}
    if unknown:
        raise UserInputError(f"unknown roles {unknown}; expected one of {', '.join(ROLES)}")
    return {name: load_qa_split(data, name) if role in QA_ROLES else load_split(data, name)
            for name, role in roles.items()}
