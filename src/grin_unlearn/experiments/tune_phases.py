"""Where the tuner's cells run: the validation phase (trials) and the reported phase (reruns).

A built-in benchmark's validation split is the authors just before the reported forget split, with an
oracle trained without them (:func:`benchmark_validation`); a user's file names its own splits and oracle
(:func:`user_validation`). The reported phase is the sweep setting itself (:func:`reported_phase`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..data.records import load_qa_split
from ..errors import UserInputError
from ..evaluation import EvalConfig, default_roles
from ..io_utils import atomic_write_dir
from .benchmarks import prepare_benchmark, train_oracle
from .runs import evaluate_model_dir
from .sweep import prepare_setting
from .tune_spec import TuneSpec, params_key


@dataclass
class Phase:
    """Where cells run: the model, data folder, forget/retain splits, eval roles and the oracle's eval."""

    model_dir: Path
    data: Path
    forget: str
    retain: str
    roles: dict[str, str]
    oracle: dict
    info: dict


def _phase_from(setting, info: dict) -> Phase:
    """A :class:`Phase` from what :func:`grin_unlearn.experiments.sweep.prepare_setting` returns."""
    return Phase(Path(setting.model_dir), Path(setting.data), setting.forget, setting.retain, setting.roles,
                 setting.oracle, info)


def benchmark_validation(spec: TuneSpec, out_dir: Path, cache_dir, eval_config: EvalConfig, log) -> Phase:
    """The validation phase of a built-in benchmark, tiny or real (see :mod:`~grin_unlearn.experiments.tune_spec`)."""
    benchmark = spec.setting.benchmark
    precision = spec.setting.precision
    assets = prepare_benchmark(benchmark, cache_dir, log=log)
    full = load_qa_split(assets.world, "full")
    order = list(dict.fromkeys(r["author"] for r in full))
    reported = {r["author"] for r in load_qa_split(assets.world, benchmark.forget_split)}
    first = min(order.index(a) for a in reported)
    count = spec.validation.get("authors") or len(reported)
    if count >= first:
        raise UserInputError(f"validation.authors: {count} authors before the reported forget split would leave "
                             f"{first - count} retain authors (need at least one)")
    authors = order[first - count:first]
    chosen = set(authors)
    forget = [r for r in full if r["author"] in chosen]
    retain = [r for r in load_qa_split(assets.world, benchmark.retain_split) if r["author"] not in chosen]
    world = out_dir / "validation" / "world"
    files = {p.name: p.read_text(encoding="utf-8") for p in sorted(assets.world.glob("*.json"))}
    files.update({"validation_forget.json": json.dumps(forget, indent=1, ensure_ascii=False),
                  "validation_retain.json": json.dumps(retain, indent=1, ensure_ascii=False)})
    if not (world / "validation_forget.json").is_file():
        atomic_write_dir(world, files, overwrite=True)
    facts = load_qa_split(assets.world, "world_facts")
    oracle_dir = train_oracle(assets, [r for r in full if r["author"] not in chosen] + facts,
                              assets.root / f"oracle-validation-{params_key(authors)}", log=log)
    roles = default_roles(world, "validation_forget", "validation_retain")
    oracle = evaluate_model_dir(oracle_dir, world, roles, out_dir / "validation" / "oracle" / "eval.json", eval_config,
                                precision=precision)
    evaluate_model_dir(assets.target, world, roles, out_dir / "validation" / "target" / "eval.json", eval_config, oracle,
                       precision=precision)
    info = {"authors": authors, "forget_records": len(forget), "retain_records": len(retain),
            "oracle": str(oracle_dir), "data": str(world), "target_eval": "validation/target/eval.json",
            "oracle_eval": "validation/oracle/eval.json"}
    return Phase(assets.target, world, "validation_forget", "validation_retain", roles, oracle, info)


def user_validation(spec: TuneSpec, out_dir: Path, eval_config: EvalConfig) -> Phase:
    """The validation phase of a user's model and data: the file's splits and oracle."""
    s, v = spec.setting, spec.validation
    questions = {r.get("question") for r in load_qa_split(s.data, s.forget)}
    shared = questions & {r.get("question") for r in load_qa_split(s.data, v["forget"])}
    if shared:
        raise UserInputError(f"validation.forget '{v['forget']}' shares {len(shared)} question(s) with the reported "
                             f"forget split '{s.forget}' (expected disjoint splits)")
    roles = default_roles(s.data, v["forget"], v["retain"])
    if "oracle" in v:
        oracle = evaluate_model_dir(v["oracle"], s.data, roles, out_dir / "validation" / "oracle" / "eval.json",
                                    eval_config, precision=s.precision)
    else:
        from ..evaluation import load_eval
        oracle = load_eval(v["oracle_eval"])
    evaluate_model_dir(s.model, s.data, roles, out_dir / "validation" / "target" / "eval.json", eval_config, oracle,
                       precision=s.precision)
    return Phase(Path(s.model), Path(s.data), v["forget"], v["retain"], roles, oracle,
                 {**v, "target_eval": "validation/target/eval.json"})


def reported_phase(spec: TuneSpec, out_dir: Path, cache_dir, log) -> Phase:
    """The reported split (target and oracle evaluated under ``<out>/reported``)."""
    setting = prepare_setting(spec.setting, out_dir / "reported", cache_dir, log)
    return _phase_from(setting, {"forget": setting.forget, "retain": setting.retain,
                                 "target_eval": "reported/target/eval.json",
                                 "oracle_eval": setting.oracle_eval and f"reported/{setting.oracle_eval}"})
