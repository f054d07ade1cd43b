"""Typed configs of an unlearning run. CLI flags and YAML files map onto the same dataclasses.

One dataclass per concern (selection, noise, training, evaluation during training; the objective's hyperparameters live in
:class:`grin_unlearn.training.objectives.ObjectiveHyperparams`), values checked in ``__post_init__`` with a
:class:`UserInputError`. The help text of each field's ``--flag`` is in its metadata, written once;
:mod:`grin_unlearn.commands.config_flags` turns fields into options and lays given flags over a
mapping, and :func:`config_from_mapping` reads a YAML/JSON mapping.

Per-objective defaults: the objective's hyperparameters (β, δ, γ, α, retain loss), learning rate and
epochs default to None, meaning "the objective's default"
(:class:`~grin_unlearn.training.objectives.ObjectiveDefaults`, sources in each objective's docstring).
:class:`UnlearnConfig` fills them in when it is built, so a saved ``config.json`` always holds the
values used. Layers of settings (a YAML file, then flags) are merged as *mappings* before the
config is built, so a flag such as ``--objective simnpo`` gets SimNPO's defaults, not those resolved
for the file's objective.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserInputError
from .noise.injection import NOISE_MODES
from .scoring.scorers import DEFAULT_EPS, DEFAULT_WAGLE_MU, SCORERS
from .training.objectives import ObjectiveHyperparams, get_objective
from .training.stop_rule import parse_stop_rule


AUTO = "auto"  # --ratio auto / --noise-var auto: chosen from the model and data (auto_ratio, auto_noise)
AUTO_RULES = ("coverage", "balance", "knee")  # how --ratio auto sets p (grin_unlearn.selection.auto_ratio)
DEFAULT_AUTO_SHARE = 0.95  # coverage's q: the smallest of 0.8, 0.9, 0.95 meeting issue #14 on the validation authors


def _help(text: str, **extra) -> dict:
    return {"help": text, **extra}


def number_or_auto(text):
    """A CLI/YAML value that is a number or the word ``auto``."""
    if isinstance(text, str) and text.strip().lower() == AUTO:
        return AUTO
    try:
        return float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None


@dataclass
class SelectionConfig:
    scorer: str = field(default="grin", metadata=_help(
        "weight scorer: grin | forget-grad | magnitude | random | wagle | none (none = full fine-tuning)"))
    ratio: typing.Union[float, str] = field(default=0.4, metadata=_help(
        "fraction p of eligible weights to select, in (0, 1], or auto (set by --auto-rule)",
        type=number_or_auto))
    auto_rule: typing.Optional[str] = field(default=None, metadata=_help(
        "rule of --ratio auto: coverage (smallest top set holding --auto-share of the forget gain sum |G_f|), "
        "balance (most forget gain beyond its share of retain Fisher damage), knee (Kneedle on the score "
        "mass). Default: coverage for scorers with a forget gradient (grin, wagle, forget-grad), knee "
        "otherwise; balance needs grin or wagle"))
    auto_share: float = field(default=DEFAULT_AUTO_SHARE, metadata=_help(
        "q of --auto-rule coverage: the share of the forget gain the mask must hold, in (0, 1]"))
    eps: float = field(default=DEFAULT_EPS, metadata=_help("ε in |G_f| / (|G_r| + ε)"))
    retain_samples: typing.Optional[int] = field(default=None, metadata=_help(
        "subsample the retain set to this many examples for G_r (default: all)"))
    include: list[str] = field(default_factory=list, metadata=_help(
        "regex patterns of extra parameters to make eligible (e.g. embed_tokens lm_head)"))
    exclude: list[str] = field(default_factory=list, metadata=_help("regex patterns of parameters to exclude"))
    wagle_mu: float = field(default=DEFAULT_WAGLE_MU, metadata=_help("μ of the WAGLE scorer |(θ − G_r/μ) ⊙ G_f|"))
    score_batch_size: int = field(default=8, metadata=_help("batch size of the gradient passes"))
    accumulator_device: typing.Optional[str] = field(default=None, metadata=_help(
        "where the fp32 G_f/G_r accumulators live (e.g. cpu, to keep them off the GPU; default: with the weights)"))

    @property
    def masked(self) -> bool:
        """False for scorer ``none``: full fine-tuning, no mask and therefore no noise."""
        return self.scorer != "none"

    def __post_init__(self):
        valid = sorted(SCORERS) + ["none"]
        if self.scorer not in valid:
            raise UserInputError(f"--scorer: unknown scorer '{self.scorer}' (valid: {', '.join(valid)})")
        self.ratio = _auto_or_number("--ratio", self.ratio)
        if self.ratio != AUTO and not 0 < self.ratio <= 1:
            raise UserInputError(f"--ratio: expected a fraction in (0, 1] or 'auto', got {self.ratio}")
        if self.auto_rule is not None and self.auto_rule not in AUTO_RULES:
            raise UserInputError(f"--auto-rule: expected one of {', '.join(AUTO_RULES)}, got '{self.auto_rule}'")
        if not 0 < self.auto_share <= 1:
            raise UserInputError(f"--auto-share: expected a share in (0, 1], got {self.auto_share}")
        if self.eps <= 0:
            raise UserInputError(f"--eps: expected ε > 0, got {self.eps}")
        if self.retain_samples is not None and self.retain_samples <= 0:
            raise UserInputError(f"--retain-samples: expected a positive count, got {self.retain_samples}")


@dataclass
class NoiseConfig:
    noise_var: typing.Union[float, str] = field(default=1e-3, metadata=_help(
        "σ² of the Gaussian noise added to selected weights (0 = none), or auto (the largest σ² the retain "
        "loss tolerates)", type=number_or_auto))
    noise_mode: str = field(default="absolute", metadata=_help(
        "absolute: N(0, σ²) as in the paper; relative: σ scaled by each tensor's weight std"))
    noise_probe: bool = field(default=False, metadata=_help(
        "measure the forget gradient over the selected weights before and after the noise into noise.json "
        "(two extra forget-gradient passes; off by default)"))

    def __post_init__(self):
        self.noise_var = _auto_or_number("--noise-var", self.noise_var)
        if self.noise_var != AUTO and self.noise_var < 0:
            raise UserInputError(f"--noise-var: expected σ² >= 0 or 'auto', got {self.noise_var}")
        if self.noise_mode not in NOISE_MODES:
            raise UserInputError(f"--noise-mode: expected one of {', '.join(NOISE_MODES)}, got '{self.noise_mode}'")


def _auto_or_number(flag: str, value):
    """``auto`` stays a word; a number (or a numeric string from YAML) becomes a float."""
    if isinstance(value, bool):
        raise UserInputError(f"{flag}: expected a number or 'auto', got {value!r}")
    try:
        return number_or_auto(value)
    except argparse.ArgumentTypeError:
        raise UserInputError(f"{flag}: expected a number or 'auto', got {value!r}") from None


@dataclass
class TrainConfig:
    epochs: typing.Optional[float] = field(default=None, metadata=_help(
        "passes over the forget set (default: the objective's)"))
    lr: typing.Optional[float] = field(default=None, metadata=_help("peak learning rate (default: the objective's)"))
    batch_size: int = field(default=16, metadata=_help("forget examples per step (each paired with a retain example)"))
    weight_decay: float = field(default=0.01, metadata=_help("decoupled weight decay (masked weights excluded)"))
    warmup_ratio: float = field(default=0.1, metadata=_help("share of steps for linear warm-up"))
    max_grad_norm: float = field(default=1.0, metadata=_help("gradient clipping norm"))
    gradient_accumulation_steps: int = field(default=1, metadata=_help("micro-batches per optimizer step"))
    save_steps: int = field(default=0, metadata=_help("checkpoint every N steps for --resume (0 = no checkpoints)"))
    seed: int = field(default=0, metadata=_help("seed of every random choice (noise, pairing, data order)"))
    max_length: int = field(default=128, metadata=_help("max tokens per example (longer ones are truncated)"))
    gradient_checkpointing: bool = field(default=False, metadata=_help("trade compute for activation memory"))

    def __post_init__(self):
        for name in ("epochs", "lr", "batch_size", "gradient_accumulation_steps", "max_length"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise UserInputError(f"--{name.replace('_', '-')}: expected a positive value, got {getattr(self, name)}")
        if self.weight_decay < 0 or self.save_steps < 0:
            raise UserInputError("--weight-decay and --save-steps must be >= 0")


@dataclass
class MonitorConfig:
    """Evaluation during training (:mod:`grin_unlearn.training.monitor`): off unless ``eval_every`` > 0."""

    eval_every: int = field(default=0, metadata=_help(
        "evaluate the forget and retain sets every N optimizer steps (and before the first), writing "
        "trajectory.json and trajectory.png (0 = off)"))
    eval_max_items: int = field(default=40, metadata=_help("records of the forget and of the retain set each "
                                                           "evaluation during training reads"))
    stop_when: list[str] = field(default_factory=list, metadata=_help(
        "stop at the first evaluation where every condition holds, e.g. forget_keyword_accuracy<=0.1 "
        "model_utility>=0.45 (metrics of the forget and retain sets; needs --eval-every)"))

    def __post_init__(self):
        if isinstance(self.eval_every, bool) or not isinstance(self.eval_every, int) or self.eval_every < 0:
            raise UserInputError(f"--eval-every: expected a number of steps >= 0, got {self.eval_every!r}")
        if isinstance(self.eval_max_items, bool) or not isinstance(self.eval_max_items, int) or self.eval_max_items <= 0:
            raise UserInputError(f"--eval-max-items: expected a positive integer, got {self.eval_max_items!r}")
        self.stop_when = [str(c) for c in parse_stop_rule(self.stop_when)]  # checked, written canonically
        if self.stop_when and not self.eval_every:
            raise UserInputError("--stop-when: needs --eval-every N (the rule is checked at each evaluation)")


@dataclass
class UnlearnConfig:
    """Everything that determines an unlearning run (saved as the run's config.json).

    Built with the objective's defaults in place of every None hyperparameter, learning rate and epoch
    count (a copy of the given sections; they are not modified). Replacing ``objective`` on a built
    config keeps the values resolved for the old one: build a new config from the unresolved parts.
    """

    objective: str = "npo"
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    hyperparams: ObjectiveHyperparams = field(default_factory=ObjectiveHyperparams)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)

    def __post_init__(self):
        spec = get_objective(self.objective)  # raises with the valid names
        self.hyperparams = self.hyperparams.resolve(spec)
        self.train = dataclasses.replace(
            self.train, lr=spec.defaults.lr if self.train.lr is None else self.train.lr,
            epochs=spec.defaults.epochs if self.train.epochs is None else self.train.epochs)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


SECTIONS = {"selection": SelectionConfig, "noise": NoiseConfig, "train": TrainConfig,
            "hyperparams": ObjectiveHyperparams, "monitor": MonitorConfig}


def field_type(cls, f: dataclasses.Field):
    """``(type, element type)`` of a dataclass field from its annotation: ``list[X]`` → ``(list, X)``, ``X | None`` → ``(X, None)``."""
    hint = typing.get_type_hints(cls)[f.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is list:
        return list, typing.get_args(hint)[0]
    if args and typing.get_origin(hint) in (typing.Union, types.UnionType):  # Optional[X] or X | None
        return args[0], None
    return hint, None


def current_config_dict(stored):
    """A stored ``UnlearnConfig.to_dict()`` (a run folder's or a checkpoint record's) as this version
    writes it: fields added since it was stored take their defaults. Anything that does not read as a
    config is returned unchanged (so it compares as different)."""
    if not isinstance(stored, dict):
        return stored
    try:
        return json.loads(json.dumps(config_from_mapping(stored).to_dict(), default=str))
    except UserInputError:
        return stored


def config_from_mapping(mapping: dict, source: str = "config") -> UnlearnConfig:
    """An :class:`UnlearnConfig` from a nested mapping (YAML/JSON): ``objective`` plus sections."""
    if not isinstance(mapping, dict):
        raise UserInputError(f"{source}: expected a mapping of settings, got {type(mapping).__name__}")
    unknown = set(mapping) - set(SECTIONS) - {"objective"}
    if unknown:
        raise UserInputError(f"{source}: unknown keys {sorted(unknown)} (valid: objective, {', '.join(SECTIONS)})")
    sections = {}
    for name, cls in SECTIONS.items():
        values = mapping.get(name) or {}
        names = {f.name for f in dataclasses.fields(cls)}
        bad = set(values) - names
        if bad:
            raise UserInputError(f"{source}: unknown keys {sorted(bad)} in '{name}' (valid: {', '.join(sorted(names))})")
        sections[name] = cls(**values)
    return UnlearnConfig(objective=mapping.get("objective", "npo"), **sections)


def load_yaml(path: str | Path) -> dict:
    """A YAML file as a mapping (safe loader: no code execution)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise UserInputError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise UserInputError(f"{path}: expected a YAML mapping at the top level")
    return data
