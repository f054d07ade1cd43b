"""Sweep files: parse a YAML grid of unlearning configs and expand it into cells.

A sweep file (YAML; see ``configs/``) holds:
* the setting, either ``embedded:`` (overrides of :class:`~grin_unlearn.experiments.embedded.EmbeddedConfig`:
  ``authors``, ``holdout_authors``, ``world_seed``, ``questions_per_author``, ``tokenizer``,
  ``vocab_size``, ``forget_split``, and the ``model`` (:class:`~grin_unlearn.models.TinyModelConfig`) /
  ``pretrain`` / ``finetune`` (:class:`~grin_unlearn.training.finetune.FinetuneConfig`) mappings; all
  optional, ``pretrain: null`` for a randomly initialised base), ``real:`` (overrides of
  :class:`~grin_unlearn.experiments.real_benchmark.RealBenchmarkConfig`: the real-model benchmark,
  SmolLM2-135M fine-tuned on the world; ``model``, ``authors``, ``holdout_authors``, ``world_seed``,
  ``questions_per_author``, ``forget_split``, ``system_prompt`` and a ``finetune`` mapping whose fields
  replace those of the benchmark's recipe) **or** a user's own
  ``model:`` (folder or Hub id) + ``data:`` + ``forget:`` + ``retain:`` with an optional oracle, given
  as ``oracle:`` (a retain-only model, evaluated once) or ``oracle_eval:`` (its ``eval.json``);
* ``base:`` an :class:`~grin_unlearn.config.UnlearnConfig` mapping (``objective`` plus sections);
* ``grid:`` dotted keys (``objective`` or ``<section>.<field>``) mapped to lists of values; the cells
  are their Cartesian product, in the order the keys are written;
* optional ``precision:`` (``fp32``, the default, or ``bf16``: unlearning and evaluation under bf16
  autocast over fp32 weights, :mod:`grin_unlearn.precision`; the real-model benchmark's files use bf16);
* optional ``eval:`` (:class:`~grin_unlearn.evaluation.EvalConfig` fields) and ``exclude_redundant:``
  (a full fine-tune, scorer ``none``, has no mask and no noise: it is run once per combination of the
  other keys, its ``selection.*`` / ``noise.*`` grid values recorded as None, shown as "–", and its
  σ² set to 0 as in the demo's baseline).

:func:`parse_spec` checks every key and value and builds each cell's
:class:`~grin_unlearn.config.UnlearnConfig` before anything runs (one clear error naming the file and
the key); :func:`expand_grid` names the cells. Running them is :mod:`grin_unlearn.experiments.sweep`.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..config import SECTIONS, UnlearnConfig, field_type, config_from_mapping, load_yaml
from ..errors import UserInputError
from ..evaluation import EvalConfig
from ..models import TinyModelConfig
from ..training.finetune import FinetuneConfig
from ..precision import PRECISIONS
from .embedded import EmbeddedConfig
from .real_benchmark import REAL_FINETUNE, RealBenchmarkConfig

SWEEP_FILE = "sweep.json"
CELL_SPEC = "cell_spec.json"  # the resolved config a cell folder was started with
SEED_KEY = "train.seed"
BENCHMARK_KEYS = ("embedded", "real")
SPEC_KEYS = ("embedded", "real", "precision", "model", "data", "forget", "retain", "oracle", "oracle_eval", "base", "grid", "eval",
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
    real: RealBenchmarkConfig | None = None
    precision: str = "fp32"
    model: str | None = None
    data: str | None = None
    forget: str = "forget10"
    retain: str = "retain90"
    oracle: str | None = None
    oracle_eval: str | None = None
    raw: dict = dataclasses.field(default_factory=dict)

    @property
    def benchmark(self) -> EmbeddedConfig | RealBenchmarkConfig | None:
        """The built-in benchmark the file names (None: the user's own model and data)."""
        return self.real if self.real is not None else self.embedded

    @property
    def benchmark_key(self) -> str | None:
        """``real`` or ``embedded``: the file's key of :attr:`benchmark`."""
        return None if self.benchmark is None else ("real" if self.real is not None else "embedded")


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
        if key in values and values[key] is not None:  # None: the field's "off" (e.g. embedded.pretrain)
            sub, start = sub if isinstance(sub, tuple) else (sub, None)
            given = values[key]
            if start is not None and isinstance(given, dict):  # over the recipe's own values, not the class defaults
                given = {**dataclasses.asdict(start), **given}
            values[key] = _dataclass_from(sub, given, f"{source}.{key}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise UserInputError(f"{source}: {err}") from None


def coerce_value(key: str, value, source: str):
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
    kind, _ = field_type(cls, fields[name])
    if kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            raise UserInputError(f"{source}: '{key}' expects a number, got {value!r}") from None
    return value


def check_key(key, source: str) -> None:
    """Refuse a grid/space key that is neither ``objective`` nor ``<section>.<field>`` of UnlearnConfig."""
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


def with_values(base: dict, values: dict) -> dict:
    """A deep copy of the ``base`` mapping with dotted ``values`` (``train.lr: 1e-3``) set in it."""
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
            base[section] = {k: coerce_value(f"{section}.{k}", v, f"{source}: base") for k, v in values.items()}
    _build_config(base, f"{source}: base")

    grid_in = mapping.get("grid") or {}
    if not isinstance(grid_in, dict):
        raise UserInputError(f"{source}: 'grid' must map dotted keys to lists of values")
    grid = {}
    for key, values in grid_in.items():
        check_key(key, source)
        if not isinstance(values, list) or not values:
            raise UserInputError(f"{source}: grid key '{key}' needs a non-empty list of values, got {values!r}")
        values = [coerce_value(key, v, f"{source}: grid") for v in values]
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise UserInputError(f"{source}: grid key '{key}' lists a value twice: {values}")
        for value in values:
            _build_config(with_values(base, {key: value}), f"{source}: grid key '{key}' value {value!r}")
        grid[key] = values

    eval_config = _dataclass_from(EvalConfig, mapping.get("eval"), f"{source}: eval")
    redundant = mapping.get("exclude_redundant", False)
    if not isinstance(redundant, bool):
        raise UserInputError(f"{source}: 'exclude_redundant' must be true or false, got {redundant!r}")
    precision = mapping.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise UserInputError(f"{source}: 'precision' must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    spec = SweepSpec(source, base, grid, eval_config, redundant, precision=precision, raw=copy.deepcopy(mapping))
    named = [k for k in BENCHMARK_KEYS if k in mapping]
    if len(named) > 1:
        raise UserInputError(f"{source}: give one of 'embedded' (the tiny-model benchmark) or 'real' "
                             "(the real-model benchmark), not both")
    if mapping.get("model") is None:
        given = [k for k in USER_DATA_KEYS if k in mapping]
        if given:
            raise UserInputError(f"{source}: {', '.join(given)} need 'model' (a built-in benchmark sets its own; "
                                 "use embedded.forget_split or real.forget_split to pick the forget split)")
        if named == ["real"]:
            spec.real = _dataclass_from(RealBenchmarkConfig, mapping.get("real"), f"{source}: real",
                                        {"finetune": (FinetuneConfig, REAL_FINETUNE)})
        else:
            spec.embedded = _dataclass_from(EmbeddedConfig, mapping.get("embedded"), f"{source}: embedded",
                                            {"model": TinyModelConfig, "finetune": FinetuneConfig,
                                             "pretrain": FinetuneConfig})
        return spec
    if named:
        raise UserInputError(f"{source}: give either '{named[0]}' or 'model' + 'data', not both")
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
        config = _build_config(with_values(spec.base, overrides), f"{spec.source}: cell {values}")
        cells.append(Cell(cell_name(values, config), config, values))
    names = [c.name for c in cells]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise UserInputError(f"{spec.source}: grid values give the same cell name twice: {clashes}")
    return cells
