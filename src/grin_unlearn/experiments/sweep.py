"""Resumable sweeps: a YAML grid of unlearning configs, run one cell after another.

A sweep file (YAML; see ``configs/``) holds:

* the setting, either ``embedded:`` (overrides of :class:`~grin_unlearn.experiments.embedded.EmbeddedConfig`:
  ``authors``, ``holdout_authors``, ``world_seed``, ``vocab_size``, ``forget_split``, and the
  ``model`` (:class:`~grin_unlearn.models.TinyModelConfig`) / ``finetune``
  (:class:`~grin_unlearn.training.finetune.FinetuneConfig`) mappings; all optional) **or** a user's own
  ``model:`` (folder or Hub id) + ``data:`` + ``forget:`` + ``retain:`` with an optional oracle, given
  as ``oracle:`` (a retain-only model, evaluated once) or ``oracle_eval:`` (its ``eval.json``);
* ``base:`` an :class:`~grin_unlearn.config.UnlearnConfig` mapping (``objective`` plus sections);
* ``grid:`` dotted keys (``objective`` or ``<section>.<field>``) mapped to lists of values; the cells
  are their Cartesian product, in the order the keys are written;
* optional ``eval:`` (:class:`~grin_unlearn.evaluation.EvalConfig` fields) and ``exclude_redundant:``
  (a full fine-tune, scorer ``none``, has no mask and no noise: it is run once per combination of the
  other keys, its ``selection.*`` / ``noise.*`` grid values recorded as None, shown as "–", and its
  σ² set to 0 as in the demo's baseline).

:func:`run_sweep` writes ``<out>/oracle/eval.json``, ``<out>/target/eval.json``, one run folder per
cell under ``<out>/cells/<name>/`` and ``<out>/sweep.json`` (the spec, every cell and its status,
rewritten atomically after each cell). A cell whose ``run.json`` and ``eval.json`` exist is reused, a
cell killed midway is rerun (resuming from its checkpoints when ``train.save_steps`` > 0), so a crashed
sweep is finished by running the same command again.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import itertools
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import SECTIONS, UnlearnConfig, _field_type, config_from_mapping, load_yaml
from ..errors import UserInputError
from ..evaluation import EvalConfig, default_roles, load_eval
from ..io_utils import atomic_write_json
from ..models import TinyModelConfig
from ..training.finetune import FinetuneConfig
from ..run_dir import is_evaluated
from .embedded import EmbeddedConfig, prepare_embedded
from .runs import evaluate_model_dir, run_cell

SWEEP_FILE = "sweep.json"
CELL_SPEC = "cell_spec.json"  # the resolved config a cell folder was started with
SEED_KEY = "train.seed"
SPEC_KEYS = ("embedded", "model", "data", "forget", "retain", "oracle", "oracle_eval", "base", "grid", "eval",
             "exclude_redundant")
USER_DATA_KEYS = ("model", "data", "forget", "retain", "oracle", "oracle_eval")
# Short tags of the usual grid keys in cell names (npo_grin_p0.4_s1e-03_seed0); others read `field-value`.
NAME_TAGS = {"objective": "", "selection.scorer": "", "selection.ratio": "p", "noise.noise_var": "s",
             "noise.noise_mode": "", "train.seed": "seed", "train.lr": "lr", "train.epochs": "ep",
             "hyperparams.beta": "beta", "hyperparams.alpha": "alpha", "hyperparams.gamma": "gamma"}
SCIENTIFIC_KEYS = ("noise.noise_var", "train.lr", "selection.eps")
# What a full fine-tune (scorer none) ignores: it has no mask and no noise.
UNMASKED_IGNORES = ("selection.", "noise.")


@dataclass
class SweepSpec:
    """A parsed sweep file (see the module docstring); ``raw`` is the mapping as read."""

    source: str
    base: dict
    grid: dict[str, list]
    eval: EvalConfig
    exclude_redundant: bool = False
    embedded: EmbeddedConfig | None = None
    model: str | None = None
    data: str | None = None
    forget: str = "forget10"
    retain: str = "retain90"
    oracle: str | None = None
    oracle_eval: str | None = None
    raw: dict = dataclasses.field(default_factory=dict)


@dataclass
class Cell:
    """One run of a sweep: its folder name, resolved config and grid values (None: not applicable)."""

    name: str
    config: UnlearnConfig
    values: dict


# --- parsing -------------------------------------------------------------------------------------

def _dataclass_from(cls, values, source: str, nested: dict | None = None):
    """``cls(**values)`` with unknown keys, wrong types and nested dataclass mappings reported by name."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise UserInputError(f"{source}: expected a mapping of {cls.__name__} fields, got {type(values).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    bad = set(values) - names
    if bad:
        raise UserInputError(f"{source}: unknown keys {sorted(bad)} (valid: {', '.join(sorted(names))})")
    values = dict(values)
    for key, sub in (nested or {}).items():
        if key in values:
            values[key] = _dataclass_from(sub, values[key], f"{source}.{key}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise UserInputError(f"{source}: {err}") from None


def _coerce(key: str, value, source: str):
    """YAML reads ``1e-3`` (no dot) as a string: turn numeric strings into the field's number type."""
    if not isinstance(value, str) or key == "objective":
        return value
    section, _, name = key.partition(".")
    cls = SECTIONS.get(section)
    fields = {f.name: f for f in dataclasses.fields(cls)} if cls else {}
    if name not in fields:
        return value
    parse = fields[name].metadata.get("type")  # a field with its own parser (number or 'auto')
    if parse is not None:
        try:
            return parse(value)
        except argparse.ArgumentTypeError as err:
            raise UserInputError(f"{source}: '{key}' {err}") from None
    kind, _ = _field_type(cls, fields[name])
    if kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            raise UserInputError(f"{source}: '{key}' expects a number, got {value!r}") from None
    return value


def _check_key(key, source: str) -> None:
    if key == "objective":
        return
    section, _, name = str(key).partition(".")
    if section not in SECTIONS or not name:
        raise UserInputError(f"{source}: grid key '{key}' must be 'objective' or '<section>.<field>' "
                             f"with a section among {', '.join(SECTIONS)}")
    names = {f.name for f in dataclasses.fields(SECTIONS[section])}
    if name not in names:
        raise UserInputError(f"{source}: grid key '{key}': unknown field '{name}' of '{section}' "
                             f"(valid: {', '.join(sorted(names))})")


def _with_values(base: dict, values: dict) -> dict:
    mapping = copy.deepcopy(base)
    for key, value in values.items():
        if key == "objective":
            mapping["objective"] = value
        else:
            section, name = key.split(".", 1)
            mapping.setdefault(section, {})
            if mapping[section] is None:
                mapping[section] = {}
            mapping[section][name] = value
    return mapping


def _build_config(mapping: dict, source: str) -> UnlearnConfig:
    try:
        return config_from_mapping(mapping, source)
    except UserInputError as err:  # a section's own check names the CLI flag: say where it came from
        raise UserInputError(str(err) if str(err).startswith(source) else f"{source}: {err}") from None
    except TypeError as err:  # a value of the wrong type reaching a comparison in __post_init__
        raise UserInputError(f"{source}: {err}") from None


def parse_spec(mapping: dict, source: str = "sweep") -> SweepSpec:
    """A :class:`SweepSpec` from a sweep mapping; every problem raises one :class:`UserInputError`."""
    if not isinstance(mapping, dict):
        raise UserInputError(f"{source}: expected a mapping at the top level")
    unknown = set(mapping) - set(SPEC_KEYS)
    if unknown:
        raise UserInputError(f"{source}: unknown keys {sorted(unknown)} (valid: {', '.join(SPEC_KEYS)})")
    base = mapping.get("base") or {}
    if not isinstance(base, dict):
        raise UserInputError(f"{source}: 'base' must be a mapping (objective plus sections)")
    base = copy.deepcopy(base)
    for section, values in base.items():
        if isinstance(values, dict):
            base[section] = {k: _coerce(f"{section}.{k}", v, f"{source}: base") for k, v in values.items()}
    _build_config(base, f"{source}: base")

    grid_in = mapping.get("grid") or {}
    if not isinstance(grid_in, dict):
        raise UserInputError(f"{source}: 'grid' must map dotted keys to lists of values")
    grid = {}
    for key, values in grid_in.items():
        _check_key(key, source)
        if not isinstance(values, list) or not values:
            raise UserInputError(f"{source}: grid key '{key}' needs a non-empty list of values, got {values!r}")
        values = [_coerce(key, v, f"{source}: grid") for v in values]
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise UserInputError(f"{source}: grid key '{key}' lists a value twice: {values}")
        for value in values:
            _build_config(_with_values(base, {key: value}), f"{source}: grid key '{key}' value {value!r}")
        grid[key] = values

    eval_config = _dataclass_from(EvalConfig, mapping.get("eval"), f"{source}: eval")
    redundant = mapping.get("exclude_redundant", False)
    if not isinstance(redundant, bool):
        raise UserInputError(f"{source}: 'exclude_redundant' must be true or false, got {redundant!r}")
    spec = SweepSpec(source, base, grid, eval_config, redundant, raw=copy.deepcopy(mapping))
    if mapping.get("model") is None:
        given = [k for k in USER_DATA_KEYS if k in mapping]
        if given:
            raise UserInputError(f"{source}: {', '.join(given)} need 'model' (the embedded benchmark sets its own; "
                                 "use embedded.forget_split to pick the forget split)")
        spec.embedded = _dataclass_from(EmbeddedConfig, mapping.get("embedded"), f"{source}: embedded",
                                        {"model": TinyModelConfig, "finetune": FinetuneConfig})
        return spec
    if "embedded" in mapping:
        raise UserInputError(f"{source}: give either 'embedded' or 'model' + 'data', not both")
    if mapping.get("data") is None:
        raise UserInputError(f"{source}: 'model' needs 'data' (a folder of splits or a Hub dataset id)")
    if mapping.get("oracle") is not None and mapping.get("oracle_eval") is not None:
        raise UserInputError(f"{source}: give either 'oracle' (a model) or 'oracle_eval' (its eval.json), not both")
    for key in USER_DATA_KEYS:
        if mapping.get(key) is not None:
            setattr(spec, key, str(mapping[key]))
    return spec


def load_spec(path: str | Path) -> SweepSpec:
    return parse_spec(load_yaml(path), str(path))


# --- the grid ------------------------------------------------------------------------------------

def format_value(key: str, value) -> str:
    """A grid value as it appears in a cell name: exact (round-trips), short (``1e-03``, ``0.4``)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if value == 0:
            return "0"
        if key in SCIENTIFIC_KEYS:
            for digits in range(17):
                text = f"{value:.{digits}e}"
                if float(text) == value:
                    return text
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "+".join(format_value(key, v) for v in value)
    return str(value)


def cell_name(values: dict, config: UnlearnConfig | None = None) -> str:
    """Folder name: objective and scorer (from ``config`` when not in the grid), then the other grid
    values in grid order, e.g. ``npo_grin_p0.4_s1e-03_seed0``; None values are skipped."""
    values = dict(values)
    if config is not None:
        values = {"objective": config.objective, "selection.scorer": config.selection.scorer, **values}
    parts = []
    for key, value in values.items():
        if value is None:
            continue
        tag = NAME_TAGS.get(key, key.split(".")[-1] + "-")
        parts.append(tag + format_value(key, value))
    name = re.sub(r"[^A-Za-z0-9._+=-]", "-", "_".join(parts))
    return name or "base"


def _scorer(values: dict, base: dict) -> str:
    return values.get("selection.scorer") or (base.get("selection") or {}).get("scorer", "grin")


def expand_grid(spec: SweepSpec | dict) -> list[Cell]:
    """Every cell of the grid (Cartesian product in key order); duplicates of a full fine-tune dropped
    when ``exclude_redundant`` (see the module docstring). A spec mapping is parsed first."""
    if not isinstance(spec, SweepSpec):
        spec = parse_spec(spec)
    keys = list(spec.grid)
    cells, seen = [], set()
    for combo in itertools.product(*spec.grid.values()):
        values = dict(zip(keys, combo))
        overrides = dict(values)
        if spec.exclude_redundant and _scorer(values, spec.base) == "none":
            values = {k: None if k.startswith(UNMASKED_IGNORES) and k != "selection.scorer" else v
                      for k, v in values.items()}
            identity = json.dumps(values, sort_keys=True)
            if identity in seen:
                continue
            seen.add(identity)
            overrides = {k: v for k, v in values.items() if v is not None}
            overrides["noise.noise_var"] = 0.0  # no mask, no noise: record it honestly, as the demo does
        config = _build_config(_with_values(spec.base, overrides), f"{spec.source}: cell {values}")
        cells.append(Cell(cell_name(values, config), config, values))
    names = [c.name for c in cells]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise UserInputError(f"{spec.source}: grid values give the same cell name twice: {clashes}")
    return cells


# --- running -------------------------------------------------------------------------------------

@dataclass
class _Setting:
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


def _prepare(spec: SweepSpec, out_dir: Path, cache_dir, log) -> _Setting:
    if spec.embedded is not None:
        assets = prepare_embedded(spec.embedded, cache_dir, log=log)
        model_dir, data = assets.target, assets.world
        forget, retain = spec.embedded.forget_split, spec.embedded.retain_split
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
        oracle = evaluate_model_dir(oracle_dir, data, roles, path, spec.eval)
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
    evaluate_model_dir(model_dir, data, roles, target, spec.eval, oracle)
    return _Setting(model_dir, data, forget, retain, roles, oracle, oracle_eval)


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
        stored = _flatten(stored)
        changed = sorted(k for k in set(wanted) | set(stored) if wanted.get(k) != stored.get(k))
        if changed:
            raise UserInputError(f"{cell_dir} holds a run with another config (differs in: {', '.join(changed)}): "
                                 "delete it, or sweep into a new --out")
    _check_eval_config(cell_dir / "eval.json", eval_config)


def _write_state(out_dir: Path, state: dict) -> None:
    atomic_write_json(out_dir / SWEEP_FILE, state)


def run_sweep(spec_path: str | Path, out_dir: str | Path, cache_dir: str | Path | None = None,
              log=print) -> list[dict]:
    """Run every cell of the sweep file ``spec_path`` into ``out_dir/cells/<name>``, one after another.

    Finished cells are reused; ``out_dir/sweep.json`` is rewritten after each cell. Returns the cell
    entries ``{"name", "dir", "values", "status" (reused | ran | failed | pending), "seconds"}``.
    """
    spec = load_spec(spec_path)
    cells = expand_grid(spec)
    out_dir = Path(out_dir)
    setting = _prepare(spec, out_dir, cache_dir, log)
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
                              cell.config, cell_dir, spec.eval, setting.oracle, log=indented)
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
