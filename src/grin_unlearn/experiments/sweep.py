"""Resumable sweeps: run the cells of a sweep file (:mod:`grin_unlearn.experiments.sweep_spec`) one
after another.

:func:`run_sweep` writes ``<out>/oracle/eval.json``, ``<out>/target/eval.json``, one run folder per
cell under ``<out>/cells/<name>/`` and ``<out>/sweep.json`` (the spec, every cell and its status,
rewritten atomically after each cell). A cell whose ``run.json`` and ``eval.json`` exist is reused, a
cell killed midway is rerun (resuming from its checkpoints when ``train.save_steps`` > 0), so a crashed
sweep is finished by running the same command again.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import current_config_dict
from ..errors import UserInputError
from ..evaluation import EvalConfig, default_roles, load_eval
from ..io_utils import atomic_write_json
from ..run_dir import is_evaluated
from .benchmarks import prepare_benchmark
from .runs import evaluate_model_dir, run_cell
from .sweep_spec import CELL_SPEC, SWEEP_FILE, Cell, SweepSpec, expand_grid, load_spec

# --- running -------------------------------------------------------------------------------------

@dataclass
class SweepSetting:
    model_dir: str | Path
    data: str | Path
    forget: str
    retain: str
    roles: dict[str, str]
    oracle: dict | None
    oracle_eval: str | None


def _check_eval_config(path: Path, config: EvalConfig) -> None:
    """Refuse to reuse an ``eval.json`` made with other evaluation settings (its numbers would not compare)."""
    if not path.is_file():
        return
    stored = load_eval(path).get("config", {})
    changed = sorted(k for k, v in dataclasses.asdict(config).items() if k in stored and stored[k] != v)
    if changed:
        raise UserInputError(f"{path} was evaluated with other eval settings ({', '.join(changed)}): "
                             "delete it to re-evaluate, or sweep into a new --out")


def with_target_seed(spec: SweepSpec, seed: int | None) -> SweepSpec:
    """``spec`` with its benchmark's ``finetune.seed = seed`` (unchanged for None)."""
    if seed is None:
        return spec
    key = spec.benchmark_key
    if key is None:
        raise UserInputError(f"--target-seed: {spec.source} names its own model; the seed applies to a built-in benchmark")
    benchmark = spec.benchmark
    setattr(spec, key, dataclasses.replace(benchmark, finetune=dataclasses.replace(benchmark.finetune, seed=seed)))
    raw = spec.raw[key] = dict(spec.raw.get(key) or {})
    raw["finetune"] = {**(raw.get("finetune") or {}), "seed": seed}
    return spec


def prepare_setting(spec: SweepSpec, out_dir: Path, cache_dir, log) -> SweepSetting:
    """The models, data and splits a spec names (the embedded benchmark built or reused), with the
    oracle and the target evaluated once into ``out_dir``."""
    if spec.benchmark is not None:
        assets = prepare_benchmark(spec.benchmark, cache_dir, log=log)
        model_dir, data = assets.target, assets.world
        forget, retain = spec.benchmark.forget_split, spec.benchmark.retain_split
        oracle_dir, oracle_eval = assets.oracle, None
    else:
        model_dir, data, forget, retain = spec.model, spec.data, spec.forget, spec.retain
        oracle_dir, oracle_eval = spec.oracle, spec.oracle_eval
    roles = default_roles(data, forget, retain)
    oracle = None
    if oracle_dir is not None:
        path = out_dir / "oracle" / "eval.json"
        _check_eval_config(path, spec.eval)
        if not path.is_file():
            log("evaluating the oracle (retrained without the forget set)")
        oracle = evaluate_model_dir(oracle_dir, data, roles, path, spec.eval, precision=spec.precision)
        oracle_eval = "oracle/eval.json"
    elif oracle_eval is not None:
        oracle = load_eval(oracle_eval)
        oracle_eval = str(Path(oracle_eval).expanduser().resolve())  # the report reads it from elsewhere
    else:
        log("no oracle given: forget quality and PrivLeak stay empty")
    target = out_dir / "target" / "eval.json"
    _check_eval_config(target, spec.eval)
    if not target.is_file():
        log("evaluating the target (before unlearning)")
    evaluate_model_dir(model_dir, data, roles, target, spec.eval, oracle, precision=spec.precision)
    return SweepSetting(model_dir, data, forget, retain, roles, oracle, oracle_eval)


def _flatten(mapping: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _check_cell_dir(cell_dir: Path, cell: Cell, eval_config: EvalConfig) -> None:
    """A cell folder started with another config must not be reused or resumed under the same name."""
    stored = None
    if (cell_dir / CELL_SPEC).is_file():
        stored = json.loads((cell_dir / CELL_SPEC).read_text())["config"]
    elif (cell_dir / "config.json").is_file():
        stored = json.loads((cell_dir / "config.json").read_text()).get("config")
    if stored is not None:
        wanted = _flatten(json.loads(json.dumps(cell.config.to_dict())))
        stored = _flatten(current_config_dict(stored))  # an older folder: new fields at their defaults
        changed = sorted(k for k in set(wanted) | set(stored) if wanted.get(k) != stored.get(k))
        if changed:
            raise UserInputError(f"{cell_dir} holds a run with another config (differs in: {', '.join(changed)}): "
                                 "delete it, or sweep into a new --out")
    _check_eval_config(cell_dir / "eval.json", eval_config)


def _write_state(out_dir: Path, state: dict) -> None:
    atomic_write_json(out_dir / SWEEP_FILE, state)


def run_sweep(spec_path: str | Path, out_dir: str | Path, cache_dir: str | Path | None = None,
              log=print, target_seed: int | None = None) -> list[dict]:
    """Run every cell of the sweep file ``spec_path`` into ``out_dir/cells/<name>``, one after another.

    Finished cells are reused; ``out_dir/sweep.json`` is rewritten after each cell. Returns the cell
    entries ``{"name", "dir", "values", "status" (reused | ran | failed | pending), "seconds"}``.
    ``target_seed`` replaces the embedded benchmark's training seed (``embedded.finetune.seed``, which
    also seeds the base): another target and oracle of the same world, for claims over several targets.
    """
    spec = with_target_seed(load_spec(spec_path), target_seed)
    cells = expand_grid(spec)
    out_dir = Path(out_dir)
    setting = prepare_setting(spec, out_dir, cache_dir, log)
    entries = [{"name": c.name, "dir": f"cells/{c.name}", "values": c.values, "status": "pending", "seconds": None}
               for c in cells]
    state = {"spec_path": str(spec_path), "spec": spec.raw, "grid_keys": list(spec.grid),
             "exclude_redundant": spec.exclude_redundant, "target_eval": "target/eval.json",
             "oracle_eval": setting.oracle_eval, "status": "running", "cells": entries}
    _write_state(out_dir, state)
    indented = (lambda message, **_: log(f"    {message}"))
    for index, (cell, entry) in enumerate(zip(cells, entries), start=1):
        cell_dir = out_dir / entry["dir"]
        _check_cell_dir(cell_dir, cell, spec.eval)
        if not is_evaluated(cell_dir):
            log(f"[{index}/{len(cells)}] {cell.name}: running")
            atomic_write_json(cell_dir / CELL_SPEC, {"name": cell.name, "values": cell.values,
                                                      "config": cell.config.to_dict()})
        start = time.perf_counter()
        try:
            result = run_cell(setting.model_dir, setting.data, setting.forget, setting.retain, setting.roles,
                              cell.config, cell_dir, spec.eval, setting.oracle, log=indented,
                              precision=spec.precision)
        except Exception as err:
            entry.update(status="failed", error=f"{type(err).__name__}: {err}")
            state["status"] = "failed"
            _write_state(out_dir, state)
            raise
        seconds = time.perf_counter() - start
        entry.update(status="reused" if result.reused else "ran", seconds=None if result.reused else round(seconds, 2))
        log(f"[{index}/{len(cells)}] {cell.name} ({'reused' if result.reused else f'ran in {seconds:.1f}s'})")
        _write_state(out_dir, state)
    state["status"] = "finished"
    _write_state(out_dir, state)
    return entries
