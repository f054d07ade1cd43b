"""The evaluation runner: sets and their roles in, the ``eval.json`` dict out.

Question/answer sets go to the TOFU protocol (:mod:`.tofu`) together, so one teacher-forced sweep and
one generation sweep serve all of them; multiple-choice and raw-text sets to :mod:`.multiple_choice`;
then :func:`~.aggregates.aggregate` computes the cross-set numbers.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..data.formatting import PromptFormat
from ..data.records import available_splits, is_hub_id, load_qa_split, load_split, validate_qa_records
from ..errors import UserInputError
from .config import EvalConfig
from .multiple_choice import evaluate_mcq, evaluate_text
from .muse import MUSE_ROLES, evaluate_muse
from .reference_logs import OracleView
from .aggregates import aggregate
from .tofu import QA_ROLES, evaluate_qa_sets

logger = logging.getLogger(__name__)

ROLES = QA_ROLES + ("mcq", "text") + MUSE_ROLES
# Split names that default_roles picks up when present, per role (TOFU's Hub configs end in _perturbed).
OPTIONAL_SPLITS = {"holdout": ("holdout",), "world_facts": ("world_facts", "world_facts_perturbed"),
                   "real_authors": ("real_authors", "real_authors_perturbed"), "knowledge": ("real_knowledge",)}


def _capped(records: list[dict], role: str, config: EvalConfig, name: str) -> list[dict]:
    records = list(records)[:config.max_items]
    if role == "retain":
        records = records[:config.retain_max_items]
    if not records:
        raise UserInputError(f"set '{name}': the {role} set is empty (expected at least one record)")
    return records


def evaluate(model, tokenizer, sets: dict[str, list[dict]], roles: dict[str, str], fmt: PromptFormat | None = None,
             config: EvalConfig | None = None, oracle: dict | OracleView | None = None,
             generations: dict[str, list[str]] | None = None) -> dict:
    """Evaluate every set under its role and aggregate; returns the JSON-able ``eval.json`` dict.

    Args:
        sets: set name -> records. roles: set name -> one of :data:`ROLES` (every set needs one).
        fmt: the prompt format the model was trained in (default: the reference's TOFU format).
        oracle: the retain-only oracle's ``eval.json`` dict, reference ``TOFU_EVAL.json`` dict or
            :class:`OracleView`, for forget quality and PrivLeak; None leaves forget quality None.
        generations: set name -> answers replacing greedy generation for that set (one per record).
    """
    fmt, config = fmt or PromptFormat(), config or EvalConfig()
    if not sets:
        raise UserInputError("no sets to evaluate")
    missing = [name for name in sets if name not in roles]
    if missing:
        raise UserInputError(f"sets without a role: {', '.join(missing)} (roles: {', '.join(ROLES)})")
    unknown = {name: roles[name] for name in sets if roles[name] not in ROLES}
    if unknown:
        raise UserInputError(f"unknown roles {unknown}; expected one of {', '.join(ROLES)}")
    start = time.perf_counter()
    capped = {name: _capped(records, roles[name], config, name) for name, records in sets.items()}
    qa = {}
    for name, records in capped.items():
        if roles[name] in QA_ROLES:
            validate_qa_records(records, f"set '{name}'")
            qa[name] = (roles[name], records)
    given = {name: list(g)[:len(capped[name])] for name, g in (generations or {}).items() if name in qa}
    phases: dict[str, float] = {}
    results = evaluate_qa_sets(model, tokenizer, qa, fmt, config, given, phases) if qa else {}
    for name, records in capped.items():
        role = roles[name]
        if role in ("mcq", "text"):
            try:
                run = evaluate_mcq if role == "mcq" else evaluate_text
                metrics, per_item = run(model, tokenizer, records, fmt, config.batch_size)
            except UserInputError as err:
                raise UserInputError(f"set '{name}': {err}") from None
            results[name] = {"role": role, "n": len(records), "metrics": metrics, "per_item": per_item}
        elif role in MUSE_ROLES:
            metrics, per_item = evaluate_muse(model, tokenizer, records, role, fmt, config.batch_size, fmt.max_length)
            results[name] = {"role": role, "n": len(records), "metrics": metrics, "per_item": per_item}
    truncated = sum(sum(r["per_item"].get("truncated", [])) for r in results.values())
    if truncated:
        logger.warning("%d answers were longer than %d tokens and were truncated", truncated, fmt.max_length)
    seconds = round(time.perf_counter() - start, 3)
    logger.info("evaluated %d sets in %.1fs", len(results), seconds)
    return {"sets": {name: results[name] for name in sets}, "aggregates": aggregate(results, oracle),
            "config": {**config.to_dict(), "protocol": config.protocol, "prompt_format": fmt.to_dict(),
                       "oracle": oracle is not None},
            "timing": {"seconds": seconds, **phases}}


def evaluate_set(model, tokenizer, records: list[dict], fmt: PromptFormat | None = None,
                 config: EvalConfig | None = None, role: str = "retain",
                 generations: list[str] | None = None) -> dict:
    """Evaluate one set; returns ``{"role", "n", "metrics": {name: value}, "per_item": {name: [...]}}``."""
    if role not in ROLES:
        raise UserInputError(f"role '{role}': expected one of {', '.join(ROLES)}")
    result = evaluate(model, tokenizer, {"set": records}, {"set": role}, fmt, config,
                      generations={"set": generations} if generations is not None else None)
    return result["sets"]["set"]


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
    """Set name -> role: the forget and retain splits, plus holdout / world_facts / real_authors /
    real_knowledge (role ``knowledge``) if present."""
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
