"""Benchmark adapters: TOFU, WMDP and PKU-SafeRLHF, from the Hugging Face Hub or from local files.

An adapter turns a data source and a forget split into everything a run needs:

* :meth:`Benchmark.training_sets` — the forget set and the retain set (unlearn, select);
* :meth:`Benchmark.eval_sets` — the evaluation sets with their roles (see
  :data:`grin_unlearn.evaluation.ROLES`), plus the prompts of the safety metrics where the benchmark has
  them (eval).

The data source is a Hub dataset id (default: the benchmark's own, e.g. ``locuslab/TOFU``) or a local
folder holding one ``<name>.json`` / ``<name>.jsonl`` per set, named as the Hub configs are (TOFU:
``forget10.json``, ``forget10_perturbed.json``, ...; WMDP: ``wmdp-bio.json``, ``bio-forget-corpus.jsonl``,
``wikitext.jsonl``, ``mmlu.json``; PKU-SafeRLHF: ``train.jsonl``, ``test.jsonl``). Every Hub read goes
through :func:`grin_unlearn.data.hub.load_hub_split`, so an unreachable Hub raises one error naming the
dataset and the cache / offline settings. A forget split may end in ``[:N]`` (``bio[:200]``,
``train[:2000]``) to keep its first N records. ``retain`` overrides the benchmark's retain set: another
set name, or the path of a ``.json`` / ``.jsonl`` file of records.

Adapters are objects registered by name (:func:`register_benchmark`); :func:`get_benchmark` raises
:class:`UserInputError` listing the valid names. This module holds the interface, the shared checks and
the registry; the three adapters live in :mod:`grin_unlearn.data.benchmark_adapters`, and
:mod:`grin_unlearn.data.benchmarks` imports both (import benchmarks from there).
``docs/benchmarks/`` has the commands, one page per benchmark.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserInputError
from .records import SUFFIXES, available_splits, is_hub_id, load_split, read_records_file

_SLICE = re.compile(r"^(?P<name>[^\[\]]+)\[:(?P<count>\d+)\]$")


@dataclass(frozen=True)
class HubSource:
    """Where a set lives on the Hub: ``datasets.load_dataset(dataset, config, split=split)``."""

    dataset: str
    config: str | None
    split: str = "train"


@dataclass
class TrainingSets:
    """The sets unlearning trains on; ``*_name`` say where they came from (for config.json)."""

    forget: list[dict]
    retain: list[dict]
    forget_name: str
    retain_name: str
    data: str


@dataclass(frozen=True)
class SafetyPrompts:
    """Prompts whose greedy answers the safety metrics score; ``generations_from`` names an eval set of
    question/answer role whose generations (same questions, same order) are reused instead."""

    prompts: list[str]
    generations_from: str | None = None


@dataclass
class EvalSets:
    """Eval set name → records and → role; ``safety``: safety set name → its prompts."""

    sets: dict[str, list[dict]]
    roles: dict[str, str]
    safety: dict[str, SafetyPrompts] = field(default_factory=dict)
    data: str = ""


def parse_split(text: str) -> tuple[str, int | None]:
    """``"forget10"`` → ``("forget10", None)``; ``"train[:500]"`` → ``("train", 500)``."""
    match = _SLICE.match(text)
    if match is None:
        return text, None
    count = int(match["count"])
    if count <= 0:
        raise UserInputError(f"--forget-split {text}: the record count in [:N] must be positive")
    return match["name"], count


def is_records_file(name: str) -> bool:
    return Path(name).suffix in SUFFIXES and Path(name).expanduser().is_file()


def validate_text_records(records: list[dict], source: str) -> list[dict]:
    """Keep the non-blank ``text`` records (wikitext has blank lines) as ``{"text": ...}``; none → error."""
    kept = []
    for index, record in enumerate(records):
        text = record.get("text")
        if not isinstance(text, str):
            raise UserInputError(f"{source}: record {index} has no string field 'text' (expected raw text records)")
        if text.strip():
            kept.append({"text": text})
    if not kept:
        raise UserInputError(f"{source}: no record with non-empty 'text' (expected raw text records)")
    return kept


def validate_mcq_records(records: list[dict], source: str) -> list[dict]:
    """Multiple-choice records: ``question`` string, 2-26 ``choices``, int ``answer`` index."""
    if not records:
        raise UserInputError(f"{source}: the set is empty (expected multiple-choice records)")
    for index, record in enumerate(records):
        choices, answer = record.get("choices"), record.get("answer")
        if not isinstance(record.get("question"), str) or not isinstance(choices, list) or not 2 <= len(choices) <= 26:
            raise UserInputError(f"{source}: record {index} needs a 'question' string and a list of 2-26 'choices'")
        if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
            raise UserInputError(f"{source}: record {index} field 'answer' must be an index into 'choices', "
                                 f"got {answer!r}")
    return [{"question": r["question"], "choices": [str(c) for c in r["choices"]], "answer": r["answer"]}
            for r in records]


class Benchmark:
    """One benchmark: its Hub id, its forget splits, and how they map onto sets and roles."""

    name: str = ""
    hub_id: str = ""
    forget_splits: tuple[str, ...] = ()
    default_forget: str = ""

    def training_sets(self, data: str | None, forget_split: str | None, retain: str | None = None) -> TrainingSets:
        raise NotImplementedError

    def eval_sets(self, data: str | None, forget_split: str | None, retain: str | None = None) -> EvalSets:
        raise NotImplementedError

    # --- shared helpers ---------------------------------------------------------------------------

    def _data(self, data: str | None) -> str:
        return str(data) if data else self.hub_id

    def _forget(self, forget_split: str | None) -> tuple[str, int | None]:
        name, count = parse_split(forget_split or self.default_forget)
        if name not in self.forget_splits:
            raise UserInputError(f"--forget-split {forget_split}: not a {self.name} forget split "
                                 f"(valid: {', '.join(self.forget_splits)}, optionally with [:N])")
        return name, count

    def _load(self, data: str, name: str, hub: HubSource) -> list[dict]:
        """Set ``name`` from a local folder (``<name>.json(l)``) or, for a Hub id, from ``hub``."""
        if is_records_file(name):
            return read_records_file(Path(name).expanduser())
        if is_hub_id(data):
            from .hub import load_hub_split
            return load_hub_split(hub.dataset, hub.config, hub.split)
        return load_split(data, name)

    def _has(self, data: str, name: str, hub_names: tuple[str, ...]) -> bool:
        if is_hub_id(data):
            return name in hub_names
        return Path(data).expanduser().is_dir() and name in available_splits(Path(data).expanduser())


BENCHMARKS: dict[str, Benchmark] = {}


def register_benchmark(cls: type[Benchmark]) -> type[Benchmark]:
    """Class decorator: register one instance of ``cls`` under ``cls.name``."""
    if cls.name in BENCHMARKS:
        raise ValueError(f"benchmark {cls.name!r} is already registered")
    BENCHMARKS[cls.name] = cls()
    return cls


def get_benchmark(name: str) -> Benchmark:
    """The adapter registered as ``name``; :class:`UserInputError` listing the valid names otherwise."""
    if name not in BENCHMARKS:
        raise UserInputError(f"--benchmark: unknown benchmark '{name}' (valid: {', '.join(sorted(BENCHMARKS))}, "
                             "or auto for plain --forget/--retain splits)")
    return BENCHMARKS[name]
