"""Multiple-choice (WMDP, MMLU) and raw-text sets: letter-logit and cloze accuracy, mean token NLL.

Zero-shot multiple choice as in WMDP (Li et al. 2024, arXiv 2403.03218) and MMLU (Hendrycks et al.
2021, arXiv 2009.03300): the prompt lists the options as ``A. ...``, ``B. ...``; the model's next-token
logits of the letter tokens decide (``multiple_choice_accuracy``, what WMDP reports). A model too small
to read a lettered list (the built-in ones score below chance there) is still measured by the **cloze**
accuracy (``cloze_accuracy``, the scoring of lm-evaluation-harness's non-letter tasks): the option ``c``
with the largest ``Σ_t log p(c_t | question, c_<t)`` over its tokens, after the question in the
model's QA prompt format, without the EOS, wins. The cloze pass costs one scored sequence per option.
Raw text (WMDP corpora) is scored by the mean NLL of every token after the first.

Both are registered metrics (:mod:`.set_metrics`) of the roles ``mcq`` and ``text``; :data:`MCQ_PROTOCOL`
and :data:`TEXT_PROTOCOL` list them, and each model pass runs once, when the first metric reads it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch

from ..data.benchmarks import validate_mcq_records
from ..data.formatting import PadCollator, PromptFormat, text_ids
from ..errors import UserInputError
from ..logprobs import IGNORE_INDEX
from ..metrics import loss_score, multiple_choice_accuracy
from ..models import model_device, pad_token_id
from .engine import eval_mode, score_examples
from .set_metrics import Output, as_output, register_set_metric, run_protocol

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _letter_ids(tokenizer, fmt: PromptFormat, count: int) -> list[int]:
    """Token id of each option letter as the model would emit it after the prompt: `` A`` after a prompt
    ending in ``Answer:``, ``A`` after one ending in a space or a chat template's generation prompt."""
    ends_in_space = fmt.chat_template or (fmt.style == "tofu" and fmt.template.endswith((" ", "\n")))
    ids = []
    for letter in LETTERS[:count]:
        encoded = tokenizer(("" if ends_in_space else " ") + letter, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1:  # the tokenizer splits " A": compare the bare letter instead
            encoded = tokenizer(letter, add_special_tokens=False)["input_ids"]
        ids.append(encoded[-1])
    return ids


def cloze_logliks(model, tokenizer, records: list[dict], fmt: PromptFormat, batch_size: int) -> torch.Tensor:
    """``(N, C)`` float64: the summed log-probability of each option's tokens after its question (EOS
    excluded); -inf for the options an item does not have."""
    width = max(len(r["choices"]) for r in records)
    pairs = [(r["question"], choice) for r in records for choice in r["choices"]]
    scores = score_examples(model, fmt.encode_many(tokenizer, pairs), pad_token_id(tokenizer), batch_size)
    eos = tokenizer.eos_token_id
    logliks = torch.full((len(records), width), -math.inf, dtype=torch.float64)  # (N, C)
    position = 0
    for i, record in enumerate(records):
        for j in range(len(record["choices"])):
            score = scores[position]
            logps = score.token_logps[:-1] if score.labels and score.labels[-1] == eos else score.token_logps
            logliks[i, j] = math.fsum(logps)
            position += 1
    return logliks


@dataclass
class ChoiceSet:
    """What the metrics of a multiple-choice set read: the model, the set's records and the prompt
    format; each pass over the model runs once, on first use."""

    model: object
    tokenizer: object
    records: list[dict]
    fmt: PromptFormat
    batch_size: int

    @property
    def answers(self) -> list[int]:
        return [r["answer"] for r in self.records]

    @cached_property
    def letter_logits(self) -> torch.Tensor:
        """``(N, C)``: the next-token logit of each option letter after the lettered prompt; -inf for the
        options an item does not have."""
        width = max(len(r["choices"]) for r in self.records)
        letter_ids = torch.tensor(_letter_ids(self.tokenizer, self.fmt, width))
        questions = [r["question"] + "\n" + "\n".join(f"{LETTERS[j]}. {c}" for j, c in enumerate(r["choices"]))
                     for r in self.records]
        prompts = [{"input_ids": ids, "labels": [IGNORE_INDEX] * len(ids)}
                   for ids in self.fmt.prompts_ids(self.tokenizer, questions)]
        collate, device = PadCollator(pad_token_id(self.tokenizer)), model_device(self.model)
        rows = []
        with eval_mode(self.model):
            for start in range(0, len(prompts), self.batch_size):
                batch = {k: v.to(device) for k, v in collate(prompts[start:start + self.batch_size]).items()}
                logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                    use_cache=False).logits  # (B, T, V)
                last = batch["attention_mask"].sum(dim=-1) - 1  # (B,) last prompt token (right padding)
                next_token = logits[torch.arange(len(last), device=device), last].float().cpu()  # (B, V)
                rows.append(next_token[:, letter_ids])  # (B, C)
        letter_logits = torch.cat(rows)  # (N, C)
        for i, r in enumerate(self.records):
            letter_logits[i, len(r["choices"]):] = -math.inf
        return letter_logits

    @cached_property
    def cloze_logliks(self) -> torch.Tensor:
        return cloze_logliks(self.model, self.tokenizer, self.records, self.fmt, self.batch_size)


@register_set_metric("multiple_choice_accuracy", ("mcq",))
def _letter_accuracy(s: ChoiceSet) -> Output:
    return as_output(multiple_choice_accuracy(s.letter_logits, s.answers))


@register_set_metric("cloze_accuracy", ("mcq",))
def _cloze_accuracy(s: ChoiceSet) -> Output:
    result = multiple_choice_accuracy(s.cloze_logliks, s.answers)
    return {"cloze_accuracy": result.value}, {"cloze_accuracy": result.per_item}


@dataclass
class TextSet:
    """What the metrics of a raw-text set read: the model and the tokenised texts, scored once, on first use."""

    model: object
    tokenizer: object
    examples: list[dict]
    batch_size: int

    @cached_property
    def scores(self) -> list:
        return score_examples(self.model, self.examples, pad_token_id(self.tokenizer), self.batch_size)


@register_set_metric("nll", ("text",))
def _nll(s: TextSet) -> Output:
    result = loss_score([score.token_logps for score in s.scores])
    return {"nll": result.value}, {"nll": result.per_item}


# The metrics of a multiple-choice set and of a raw-text set, in the order eval.json holds them.
MCQ_PROTOCOL = ["multiple_choice_accuracy", "cloze_accuracy"]
TEXT_PROTOCOL = ["nll"]


def evaluate_mcq(model, tokenizer, records: list[dict], fmt: PromptFormat, batch_size: int,
                 protocol: list[str] | None = None) -> Output:
    """The metrics of ``protocol`` (default :data:`MCQ_PROTOCOL`) on a multiple-choice set."""
    records = validate_mcq_records(records, "multiple-choice set")
    return run_protocol(ChoiceSet(model, tokenizer, records, fmt, batch_size), "mcq",
                        MCQ_PROTOCOL if protocol is None else protocol)


def evaluate_text(model, tokenizer, records: list[dict], fmt: PromptFormat, batch_size: int,
                  protocol: list[str] | None = None) -> Output:
    """The metrics of ``protocol`` (default :data:`TEXT_PROTOCOL`) on raw ``text`` records (BOS first
    when the tokenizer has one; truncated to ``fmt.max_length``; every token after the first is scored)."""
    examples = []
    for index, record in enumerate(records):
        if not isinstance(record.get("text"), str) or not record["text"].strip():
            raise UserInputError(f"text record {index}: needs a non-empty string field 'text'")
        ids = text_ids(tokenizer, record["text"])[:fmt.max_length]
        if len(ids) < 2:
            raise UserInputError(f"text record {index}: too short to score (needs at least 2 tokens)")
        examples.append({"input_ids": ids, "labels": ids})
    return run_protocol(TextSet(model, tokenizer, examples, batch_size), "text",
                        TEXT_PROTOCOL if protocol is None else protocol)
