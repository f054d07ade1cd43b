"""Prompt formatting, tokenisation with answer-only labels, and the padding collator.

One :class:`PromptFormat` is shared by ``finetune``, ``select``, ``unlearn`` and ``eval`` and saved
next to every model written here (``prompt_format.json``), so a model is scored in the format it was
trained in. Two tokenisation styles:

* ``tofu`` (default) — the reference TOFU tokenisation of locuslab/open-unlearning
  (``src/data/utils.py``, ``preprocess_chat_instance``; model configs ``configs/model/*.yaml``): the
  prompt ``Question: {q}\\nAnswer: `` and the answer form **one string**, tokenised with the tokenizer's
  own special tokens (truncated to ``max_length``); EOS is appended when the last token is not EOS;
  every token after the token count of the prompt *tokenised alone* is labelled. With a chat template,
  the conversation is ``[system?, user, assistant]`` rendered by ``apply_chat_template`` and the prompt
  is the same without the assistant turn, with the generation prompt. With tokenizers whose space
  attaches to the next word (Llama-2's SentencePiece, GPT-2's byte-level BPE) the prompt alone ends
  in a lone space token, so the first answer token is not labelled and generation starts after that
  space token: the reference's behaviour, kept for comparability with published TOFU numbers.
* ``split`` — this project's earlier tokenisation: prompt (``Question: {q}\\nAnswer:``, BOS first) and
  answer (`` {a}`` + EOS) tokenised separately and concatenated, so every answer token is labelled
  and the labelled tokens are exactly what greedy generation from the prompt would produce. Use it
  only for models trained with it: scores are not comparable with the reference's.

Labels are IGNORE_INDEX on prompt and padding, so every loss and log-prob is over answer tokens.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch

from ..errors import UserInputError
from ..logprobs import IGNORE_INDEX

STYLES = ("tofu", "split")
PROMPT_TEMPLATE = "Question: {question}\nAnswer: "
# The system prompt of the reference's chat-model configs (Llama-3.x, Qwen2.5, Phi-3.5, zephyr).
CHAT_SYSTEM_PROMPT = "You are a helpful assistant."
FORMAT_FILE = "prompt_format.json"
SHOT_SEPARATOR = "\n\n"  # after each in-context answer (the reference's asst_end_tag of base models)


@dataclass(frozen=True)
class PromptFormat:
    """How a question/answer pair becomes tokens.

    Attributes:
        style: ``tofu`` (reference tokenisation) or ``split`` (see the module docstring).
        template: the plain prompt, with ``{question}``; its trailing spaces belong to the prompt in
            ``tofu`` style and to the answer in ``split`` style. The reference's model configs give
            ``Question: {question}\nAnswer: `` (base models) and ``[INST] {question} [/INST]``
            (Llama-2-chat, which the reference formats without its chat template).
        chat_template: use ``tokenizer.apply_chat_template`` instead of ``template``.
        system_prompt: system message of the chat template ("" for none).
        date_string: passed to chat templates that print a date (the reference's Llama-3.1 and
            zephyr configs use ``"10 Apr 2025"``); None leaves the template's default.
        max_length: tokens per example; longer ones are truncated (the reference evaluates at 512).
    """

    style: str = "tofu"
    template: str = PROMPT_TEMPLATE
    chat_template: bool = False
    system_prompt: str = CHAT_SYSTEM_PROMPT
    date_string: str | None = None
    max_length: int = 512

    def __post_init__(self):
        if self.style not in STYLES:
            raise UserInputError(f"--prompt-style: expected one of {', '.join(STYLES)}, got {self.style!r}")
        if not isinstance(self.template, str) or "{question}" not in self.template:
            raise UserInputError(f"prompt template must contain '{{question}}', got {self.template!r}")
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int) or self.max_length < 2:
            raise UserInputError(f"--max-length: must be an integer >= 2, got {self.max_length!r}")

    # --- text --------------------------------------------------------------------------------------

    def _prompt_text(self, question: str) -> str:
        text = self.template.replace("{question}", question)
        return text.rstrip(" ") if self.style == "split" else text

    def _answer_text(self, answer: str) -> str:
        if self.style == "split" and not self.chat_template:
            filled = self.template.replace("{question}", "")
            return filled[len(filled.rstrip(" ")):] + answer if filled.endswith(" ") else " " + answer
        return answer

    def _chat(self, tokenizer, question: str, answer: str | None, shots: list[tuple[str, str]] = ()) -> str:
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        for shot_question, shot_answer in shots:  # in-context examples: one user and one assistant turn each
            messages += [{"role": "user", "content": shot_question}, {"role": "assistant", "content": shot_answer}]
        messages.append({"role": "user", "content": question})
        if answer is not None:
            messages.append({"role": "assistant", "content": answer})
        extra = {"date_string": self.date_string} if self.date_string is not None else {}
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=answer is None, **extra)

    # --- tokens ------------------------------------------------------------------------------------

    def _tokenize(self, tokenizer, texts: list[str], special: bool) -> tuple[list[list[int]], list[bool]]:
        """Token ids of each text truncated to ``max_length`` as the tokenizer truncates, and whether it was."""
        ids = [list(x) for x in tokenizer(texts, add_special_tokens=special)["input_ids"]]
        cut = [len(x) > self.max_length for x in ids]
        for i in [i for i, c in enumerate(cut) if c]:
            ids[i] = list(tokenizer(texts[i], add_special_tokens=special, max_length=self.max_length,
                                    truncation=True)["input_ids"])
        return ids, cut

    def prompts_ids(self, tokenizer, questions: list[str]) -> list[list[int]]:
        """The generation prompt of each question (what the labels of :meth:`encode_many` follow)."""
        if self.chat_template:
            return self._tokenize(tokenizer, [self._chat(tokenizer, q, None) for q in questions], False)[0]
        if self.style == "tofu":
            return self._tokenize(tokenizer, [self._prompt_text(q) for q in questions], True)[0]
        bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        return [bos + ids for ids in self._tokenize(tokenizer, [self._prompt_text(q) for q in questions], False)[0]]

    def prompt_ids(self, tokenizer, question: str) -> list[int]:
        return self.prompts_ids(tokenizer, [question])[0]

    def few_shot_prompt_ids(self, tokenizer, shots: list[tuple[str, str]], question: str) -> list[int]:
        """The generation prompt of ``question`` after the in-context ``(question, answer)`` ``shots``, the
        last ``max_length`` tokens. Plain template: each shot is ``template(q) + a + "\n\n"``, so
        ``Question: q1\nAnswer: a1\n\nQuestion: q\nAnswer: `` (the reference's base-model few-shot
        prompt); chat template: one user and one assistant turn per shot."""
        if self.chat_template:
            text = self._chat(tokenizer, question, None, shots)
            return list(tokenizer(text, add_special_tokens=False)["input_ids"])[-self.max_length:]
        prompt = self.prompt_ids(tokenizer, question)
        bos = prompt[:1] if prompt and prompt[0] == tokenizer.bos_token_id else []
        prefix = "".join(self.template.replace("{question}", q) + a + SHOT_SEPARATOR for q, a in shots)
        shot_ids = list(tokenizer(prefix, add_special_tokens=False)["input_ids"]) if prefix else []
        return (bos + shot_ids + prompt[len(bos):])[-self.max_length:]

    def encode_many(self, tokenizer, pairs: list[tuple[str, str]]) -> list[dict]:
        """``{"input_ids", "labels", "prompt_ids", "truncated"}`` of every ``(question, answer)`` pair.

        ``tofu``: ``ids = tok(prompt + answer)[:max_length] (+ EOS)``, ``labels = [-100] * len(tok(prompt))
        + ids[len(tok(prompt)):]``. ``split``: ``prompt_ids + tok(answer) + EOS``, cut as
        :func:`_cut_split` says.
        """
        questions = list(dict.fromkeys(q for q, _ in pairs))
        prompts = dict(zip(questions, self.prompts_ids(tokenizer, questions)))
        eos = tokenizer.eos_token_id
        if self.style == "tofu":
            if self.chat_template:
                fulls, cut = self._tokenize(tokenizer, [self._chat(tokenizer, q, a) for q, a in pairs], False)
            else:
                fulls, cut = self._tokenize(tokenizer, [self._prompt_text(q) + a for q, a in pairs], True)
            examples = []
            for (question, _), ids, truncated in zip(pairs, fulls, cut):
                if eos is not None and (not ids or ids[-1] != eos):
                    ids = ids + [eos]
                n_prompt = min(len(prompts[question]), len(ids))
                examples.append({"input_ids": ids, "labels": [IGNORE_INDEX] * n_prompt + ids[n_prompt:],
                                 "prompt_ids": prompts[question], "truncated": truncated})
            return examples
        answers = tokenizer([self._answer_text(a) for _, a in pairs], add_special_tokens=False)["input_ids"]
        tail = [eos] if eos is not None else []
        return [_cut_split(prompts[q], list(ids) + tail, self.max_length) for (q, _), ids in zip(pairs, answers)]

    # --- persistence -------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, mapping: dict, source: str = "prompt format") -> PromptFormat:
        if not isinstance(mapping, dict):
            raise UserInputError(f"{source}: expected a JSON object of prompt-format fields")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(mapping) - known)
        if unknown:
            raise UserInputError(f"{source}: unknown prompt-format fields {unknown} (known: {', '.join(sorted(known))})")
        return cls(**mapping)

    def save(self, folder: str | Path) -> Path:
        """Record this format in ``folder/prompt_format.json`` (next to a saved model)."""
        from ..io_utils import atomic_write_json

        return atomic_write_json(Path(folder) / FORMAT_FILE, self.to_dict())

    @classmethod
    def load(cls, folder: str | Path) -> PromptFormat | None:
        """The format recorded in ``folder`` (a model folder), or None when there is none."""
        path = Path(folder).expanduser() / FORMAT_FILE
        if not path.is_file():
            return None
        try:
            mapping = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise UserInputError(f"{path}: not a readable prompt format ({err})") from None
        return cls.from_dict(mapping, str(path))

    def with_max_length(self, max_length: int) -> PromptFormat:
        return replace(self, max_length=max_length)

    def fit_to_context(self, model, log=print) -> PromptFormat:
        """``max_length`` capped at the model's context window (longer inputs are truncated, not fed)."""
        context = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        if isinstance(context, int) and 0 < context < self.max_length:
            log(f"max_length {self.max_length} exceeds the model's context of {context} tokens; using {context}")
            return replace(self, max_length=context)
        return self


def _cut_split(prompt: list[int], answer: list[int], max_length: int) -> dict:
    """``split`` truncation: keep the answer's head (at least half the budget) and the prompt's tail."""
    truncated = len(prompt) + len(answer) > max_length
    if truncated:
        answer = answer[: max(max_length - len(prompt), max_length // 2)]
        prompt = prompt[len(prompt) - (max_length - len(answer)):]
    return {"input_ids": prompt + answer, "labels": [IGNORE_INDEX] * len(prompt) + answer,
            "prompt_ids": prompt, "truncated": truncated}


def encode_example(tokenizer, question: str, answer: str, fmt: PromptFormat) -> dict[str, list[int]]:
    """``input_ids`` and ``labels`` (prompt masked) of one question/answer pair (see :class:`PromptFormat`)."""
    return fmt.encode_many(tokenizer, [(question, answer)])[0]


def encode_records(tokenizer, records: list[dict], fmt: PromptFormat, answer_key: str = "answer",
                   answers: list[str] | None = None) -> list[dict]:
    """Encode every record's question with ``answers[i]`` (or its ``answer_key`` field)."""
    texts = answers if answers is not None else [r[answer_key] for r in records]
    return fmt.encode_many(tokenizer, [(r["question"], a) for r, a in zip(records, texts)]) if records else []


def text_ids(tokenizer, text: str) -> list[int]:
    """A raw text's token ids, BOS first when the tokenizer has one (every token after the first is scored)."""
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    return bos + list(tokenizer(text, add_special_tokens=False)["input_ids"])


def is_text_record(record: dict) -> bool:
    """A raw-text record (``text``, no ``question``): a document to learn or unlearn as a whole."""
    return "text" in record and "question" not in record


def encode_text(tokenizer, text: str, max_length: int) -> list[dict[str, list[int]]]:
    """A raw document as consecutive chunks of at most ``max_length`` tokens, labels on every token.

    The document is tokenised once (BOS first, EOS last when the tokenizer has them) and cut into
    chunks, so no token is lost to truncation; a last chunk of a single token (nothing to predict)
    is dropped. Raw-text unlearning (WMDP corpora, arXiv 2403.03218) scores the whole document, so
    ``labels == input_ids`` (the shift in :func:`~grin_unlearn.logprobs.sequence_logprobs` skips the
    first token of each chunk).
    """
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2 to score a chunk, got {max_length}")
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    ids = bos + list(tokenizer(text, add_special_tokens=False)["input_ids"]) + eos
    chunks = [ids[start:start + max_length] for start in range(0, len(ids), max_length)]
    return [{"input_ids": chunk, "labels": list(chunk), "truncated": False} for chunk in chunks if len(chunk) >= 2]


def encode_training_records(tokenizer, records: list[dict], fmt: PromptFormat) -> list[dict]:
    """Question/answer records as :func:`encode_example`, raw ``text`` records as :func:`encode_text` chunks.

    The result has one example per question/answer record and one per text chunk, in record order.
    """
    examples: list[dict | None] = []
    qa_pairs, qa_slots = [], []
    for index, record in enumerate(records):
        if is_text_record(record):
            if not isinstance(record["text"], str) or not record["text"].strip():
                raise UserInputError(f"text record {index}: needs a non-empty string field 'text'")
            examples.extend(encode_text(tokenizer, record["text"], fmt.max_length))
        else:
            qa_slots.append(len(examples))
            qa_pairs.append((record["question"], record["answer"]))
            examples.append(None)
    for slot, example in zip(qa_slots, fmt.encode_many(tokenizer, qa_pairs) if qa_pairs else []):
        examples[slot] = example
    return examples


@dataclass
class PadCollator:
    """Right-pad ``input_ids``/``labels`` to the longest example of the batch; build the attention mask."""

    pad_token_id: int

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(e["input_ids"]) for e in examples)
        input_ids = torch.full((len(examples), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((len(examples), width), dtype=torch.long)
        for row, example in enumerate(examples):
            n = len(example["input_ids"])
            input_ids[row, :n] = torch.tensor(example["input_ids"])
            labels[row, :n] = torch.tensor(example["labels"])
            attention[row, :n] = 1
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention}


def left_pad_prompts(prompts: list[list[int]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Left-pad prompts for batched generation (decoder-only models continue from the right edge)."""
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        input_ids[row, width - len(prompt):] = torch.tensor(prompt)
        attention[row, width - len(prompt):] = 1
    return {"input_ids": input_ids, "attention_mask": attention}
