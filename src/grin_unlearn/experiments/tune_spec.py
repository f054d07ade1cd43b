"""A tuner file (YAML): the setting, the methods, each method's search space, the selection rule.

Keys (see ``configs/tune/``):

* the setting and the shared settings, as in a sweep file (:mod:`grin_unlearn.experiments.sweep`):
  ``embedded:``, ``real:`` or ``model:`` + ``data:`` + ``forget:`` + ``retain:`` (+ ``oracle:`` / ``oracle_eval:``),
  ``base:`` (an :class:`~grin_unlearn.config.UnlearnConfig` mapping every trial starts from), ``eval:``
  and ``precision:``;
* ``objectives:`` and ``scorers:`` — the methods are their product; each gets the same ``trials``;
* ``space:`` dotted keys → ``{low, high[, log][, step]}`` (float, or int when both bounds are ints) or
  ``{choices: [...]}``; ``selection.*`` and ``noise.*`` keys apply to masked scorers only (a full
  fine-tune, scorer ``none``, has no mask, so no p and no noise: σ² = 0);
* ``select:`` the rule that picks one trial per method from its validation results:
  ``{maximize: METRIC, subject_to: {METRIC: {min: x} | {max: x} | {min_of_target: r} | {max_of_target: r}, ...},
  fallback: METRIC}`` (``min_of_target: 0.95``: at least 0.95× the target's value on the validation
  split, resolved to a number once the target is evaluated); among the
  trials meeting every bound the highest ``maximize`` wins; if none does, the highest ``fallback``;
  ties go to the earlier trial. Default: highest model utility among trials with forget quality ≥ 0.05,
  else highest forget quality;
* ``validation:`` where the trials run (disjoint from the reported forget split, see below);
* ``seeds:`` the seeds of the reruns of each chosen config on the reported split (≥ 3 advised);
  ``sampler_seed:`` the seed of Optuna's sampler.

**Validation split.** Trials must not see the authors whose forgetting is reported. On the built-in
benchmarks (tiny and real) the forget splits are the *last* authors of the world (``forget01 ⊂ forget05 ⊂ forget10``),
so the validation forget split is the ``validation.authors`` authors (default: as many as the reported
forget split has) just *before* the reported ones; its retain split is the reported retain split
without them; its oracle is the base fine-tuned on every author but them (plus ``world_facts``), with
the benchmark's own recipe, cached beside the target. With your own ``model`` + ``data`` (e.g. TOFU,
whose forget splits are nested in the same way), give ``validation: {forget, retain, oracle | oracle_eval}``
naming splits of ``data`` and a model never trained on the validation forget split; the tuner refuses
a validation forget split that shares a question with the reported one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

from ..config import load_yaml
from ..errors import UserInputError
from .report import report_columns
from ..scoring.scorers import SCORERS
from ..training.objectives import OBJECTIVES
from .sweep_spec import SPEC_KEYS, UNMASKED_IGNORES, SweepSpec, check_key, coerce_value, with_values, parse_spec

TUNE_KEYS = ("objectives", "scorers", "trials", "space", "select", "validation", "seeds", "sampler_seed")
# A bound is absolute (min, max) or a ratio of the target's own value on the validation split
# (min_of_target: 0.95 reads "at least 0.95× the target's"), resolved once the target is evaluated.
BOUND_KINDS = ("min", "max", "min_of_target", "max_of_target")
DEFAULT_RULE = {"maximize": "model_utility", "subject_to": {"forget_quality": {"min": 0.05}},
                "fallback": "forget_quality"}


@dataclass(frozen=True)
class Param:
    """One dimension of a search space: ``choices`` or ``[low, high]`` (``log`` scale, int ``step``)."""

    key: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: int | None = None
    choices: tuple | None = None

    @property
    def masked_only(self) -> bool:
        return self.key.startswith(UNMASKED_IGNORES)

    @property
    def is_int(self) -> bool:
        return self.choices is None and isinstance(self.low, int) and isinstance(self.high, int)


@dataclass(frozen=True)
class Method:
    objective: str
    scorer: str

    @property
    def name(self) -> str:
        return f"{self.objective}_{self.scorer}"


@dataclass
class TuneSpec:
    """A parsed tuner file; ``setting`` is the sweep-style part (setting, ``base``, ``eval``)."""

    source: str
    setting: SweepSpec
    methods: list[Method]
    trials: int
    space: list[Param]
    rule: dict
    validation: dict
    seeds: list[int]
    sampler_seed: int
    raw: dict

    def space_for(self, method: Method) -> list[Param]:
        return [p for p in self.space if method.scorer != "none" or not p.masked_only]


def _param(key: str, body, source: str) -> Param:
    check_key(key, source)
    if key in ("objective", "selection.scorer", "train.seed"):
        raise UserInputError(f"{source}: space key '{key}' is not tuned (methods and seeds are set by the file)")
    if not isinstance(body, dict):
        raise UserInputError(f"{source}: space key '{key}' needs {{low, high}} or {{choices: [...]}}, got {body!r}")
    if "choices" in body:
        choices = body["choices"]
        if set(body) != {"choices"} or not isinstance(choices, list) or not choices:
            raise UserInputError(f"{source}: space key '{key}': 'choices' must be a non-empty list and stand alone")
        return Param(key, choices=tuple(coerce_value(key, c, source) for c in choices))
    unknown = set(body) - {"low", "high", "log", "step"}
    if unknown or "low" not in body or "high" not in body:
        raise UserInputError(f"{source}: space key '{key}' needs low and high (optional log, step), got {sorted(body)}")
    low, high = (coerce_value(key, body[b], source) for b in ("low", "high"))
    if isinstance(low, bool) or isinstance(high, bool) or not all(isinstance(v, (int, float)) for v in (low, high)):
        raise UserInputError(f"{source}: space key '{key}': low and high must be numbers, got {low!r}, {high!r}")
    log = bool(body.get("log", False))
    if not (math.isfinite(low) and math.isfinite(high) and low < high) or (log and low <= 0):
        raise UserInputError(f"{source}: space key '{key}': expected low < high (and low > 0 on a log scale)")
    step = body.get("step")
    if step is not None and (not isinstance(step, int) or step <= 0 or log):
        raise UserInputError(f"{source}: space key '{key}': step must be a positive int, without log")
    if step is not None and not (isinstance(low, int) and isinstance(high, int)):
        raise UserInputError(f"{source}: space key '{key}': step needs int low and high")
    return Param(key, low, high, log, step)


def _rule(rule, source: str) -> dict:
    if rule is None:
        return json.loads(json.dumps(DEFAULT_RULE))
    if not isinstance(rule, dict) or set(rule) - {"maximize", "subject_to", "fallback"} or "maximize" not in rule:
        raise UserInputError(f"{source}: 'select' must be {{maximize: METRIC, subject_to: {{...}}, fallback: METRIC}}")
    bounds = rule.get("subject_to") or {}
    metrics = [key for key, _ in report_columns()]
    for metric in [rule["maximize"], rule.get("fallback", rule["maximize"]), *bounds]:
        if metric not in metrics:
            raise UserInputError(f"{source}: select: unknown metric '{metric}' (valid: {', '.join(metrics)})")
    for metric, bound in bounds.items():
        if not isinstance(bound, dict) or len(bound) != 1 or next(iter(bound)) not in BOUND_KINDS \
                or isinstance(next(iter(bound.values())), bool) or not isinstance(next(iter(bound.values())), (int, float)):
            raise UserInputError(f"{source}: select.subject_to.{metric} must be {{min: number}}, {{max: number}}, "
                                 "{min_of_target: ratio} or {max_of_target: ratio}")
    return {"maximize": rule["maximize"], "subject_to": bounds, "fallback": rule.get("fallback", rule["maximize"])}


def _names(values, valid, what: str, source: str) -> list[str]:
    if not isinstance(values, list) or not values or len(set(values)) != len(values):
        raise UserInputError(f"{source}: '{what}' must be a non-empty list without repeats, got {values!r}")
    bad = [v for v in values if v not in valid]
    if bad:
        raise UserInputError(f"{source}: unknown {what} {bad} (valid: {', '.join(sorted(valid))})")
    return list(values)


def parse_tune_spec(mapping: dict, source: str = "tune") -> TuneSpec:
    """A :class:`TuneSpec` from a tuner mapping; every problem raises one :class:`UserInputError`."""
    if not isinstance(mapping, dict):
        raise UserInputError(f"{source}: expected a mapping at the top level")
    unknown = set(mapping) - set(TUNE_KEYS) - (set(SPEC_KEYS) - {"grid", "exclude_redundant"})
    if unknown:
        raise UserInputError(f"{source}: unknown keys {sorted(unknown)} (valid: {', '.join(TUNE_KEYS)} and the "
                             "setting keys of a sweep file without grid)")
    setting = parse_spec({k: v for k, v in mapping.items() if k not in TUNE_KEYS}, source)
    objectives = _names(mapping.get("objectives", [(setting.base or {}).get("objective", "npo")]), OBJECTIVES,
                        "objectives", source)
    scorers = _names(mapping.get("scorers", ["none", "grin"]), set(SCORERS) | {"none"}, "scorers", source)
    trials = mapping.get("trials", 8)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials <= 0:
        raise UserInputError(f"{source}: 'trials' must be a positive integer (trials per method), got {trials!r}")
    space_in = mapping.get("space") or {}
    if not isinstance(space_in, dict) or not space_in:
        raise UserInputError(f"{source}: 'space' must map dotted keys to ranges or choices")
    space = [_param(key, body, f"{source}: space") for key, body in space_in.items()]
    seeds = mapping.get("seeds", [0, 1, 2])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                           for s in seeds) or len(set(seeds)) != len(seeds):
        raise UserInputError(f"{source}: 'seeds' must be a non-empty list of distinct integers, got {seeds!r}")
    sampler_seed = mapping.get("sampler_seed", 0)
    if isinstance(sampler_seed, bool) or not isinstance(sampler_seed, int):
        raise UserInputError(f"{source}: 'sampler_seed' must be an integer, got {sampler_seed!r}")
    validation = _validation(mapping.get("validation"), setting, source)
    methods = [Method(o, s) for o in objectives for s in scorers]
    return TuneSpec(source, setting, methods, trials, space, _rule(mapping.get("select"), source), validation,
                    seeds, sampler_seed, raw=json.loads(json.dumps(mapping, default=str)))


def _validation(values, setting: SweepSpec, source: str) -> dict:
    values = values or {}
    if not isinstance(values, dict):
        raise UserInputError(f"{source}: 'validation' must be a mapping")
    if setting.benchmark is not None:
        if set(values) - {"authors"}:
            raise UserInputError(f"{source}: validation on a built-in benchmark takes only 'authors'")
        authors = values.get("authors")
        if authors is not None and (isinstance(authors, bool) or not isinstance(authors, int) or authors <= 0):
            raise UserInputError(f"{source}: validation.authors must be a positive integer, got {authors!r}")
        return {"authors": authors}
    needed = {"forget", "retain"}
    if not needed <= set(values) or set(values) - needed - {"oracle", "oracle_eval"}:
        raise UserInputError(f"{source}: with your own model and data, 'validation' needs forget and retain splits "
                             "(disjoint from the reported forget split) and an oracle or oracle_eval")
    if ("oracle" in values) == ("oracle_eval" in values):
        raise UserInputError(f"{source}: validation needs exactly one of oracle (a model never trained on its "
                             "forget split) or oracle_eval (that model's eval.json)")
    return {k: str(v) for k, v in values.items()}


def resolve_rule(rule: dict, target: dict, source: str = "select") -> dict:
    """``rule`` with each ``{min_of_target: r}`` / ``{max_of_target: r}`` bound turned into
    ``{min: r × target[metric]}`` / ``{max: …}`` (``target``: the target's metrics row)."""
    bounds = {}
    for metric, bound in (rule.get("subject_to") or {}).items():
        kind, value = next(iter(bound.items()))
        if kind.endswith("_of_target"):
            reference = target.get(metric)
            if reference is None or math.isnan(reference):
                raise UserInputError(f"{source}: subject_to.{metric}.{kind} needs the target's {metric}, which its "
                                     "evaluation does not have")
            bound = {kind.removesuffix("_of_target"): value * reference}
        bounds[metric] = bound
    return {**rule, "subject_to": bounds}


def load_tune_spec(path: str | Path) -> TuneSpec:
    return parse_tune_spec(load_yaml(path), str(path))


def trial_mapping(spec: TuneSpec, method: Method, params: dict) -> dict:
    """The :class:`UnlearnConfig` mapping of one trial: ``base`` + the method + the sampled ``params``."""
    values = {"objective": method.objective, "selection.scorer": method.scorer, **params}
    if method.scorer == "none":
        values["noise.noise_var"] = 0.0  # no mask, no noise: recorded honestly, as in sweeps
    return with_values(spec.setting.base, values)


def params_key(params: dict) -> str:
    """A short stable name for a parameter set (the trial's folder): a hash of its sorted JSON."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]


def asdict(spec: TuneSpec) -> dict:
    return {"methods": [m.name for m in spec.methods], "trials": spec.trials,
            "space": [dataclasses.asdict(p) for p in spec.space], "rule": spec.rule, "seeds": spec.seeds,
            "validation": spec.validation, "sampler_seed": spec.sampler_seed}
