"""`grin-unlearn demo`: the whole job on the embedded benchmark, with one results table.

Builds or reuses the world, the target and the oracle (:mod:`grin_unlearn.experiments.embedded`); evaluates both;
runs GRIN (default objective NPO) and the same objective without mask and noise; evaluates both runs
against the oracle; attacks every model (:mod:`.demo_robustness`); prints one table and writes
``<out>/report.md`` with PNG plots.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..config import NoiseConfig, SelectionConfig, TrainConfig, UnlearnConfig
from ..data.records import load_qa_split
from ..data.world import chance_levels
from ..evaluation import aggregate
from ..evaluation import EvalConfig, default_roles, load_eval_sets
from ..io_utils import atomic_write_text
from ..precision import autocast
from ..run_dir import finished_timing, noise_record
from ..training.objectives import ObjectiveHyperparams
from ..evaluation.attacks.study import RelearnSettings
from .demo_robustness import RELEARN, robustness_section
from .benchmarks import prepare_benchmark
from .embedded import EmbeddedConfig
from .real_benchmark import RealBenchmarkConfig
from .report import markdown_table, metrics_row, plot_metric_bars, plot_quality_utility
from .runs import SOURCE_FILE, evaluate_model_dir, run_cell
from .truth_ratio_shift import plot_truth_ratio_cdfs, shift_rows, shift_table

@dataclass
class MethodSettings:
    """One demo method's settings: training, objective hyperparameters and (GRIN only) p, σ², noise mode."""

    train: TrainConfig
    hyperparams: ObjectiveHyperparams
    ratio: float | str = 0.4
    noise_var: float | str = 0.0
    noise_mode: str = "absolute"

    def text(self, masked: bool = False) -> str:
        hp = ", ".join(f"{k} {v:.3g}" for k, v in (("α", self.hyperparams.alpha), ("β", self.hyperparams.beta))
                       if v is not None)
        text = f"lr {self.train.lr:.3g}, {self.train.epochs} epochs" + (f", {hp}" if hp else "")
        return text if not masked else (f"{text}, p = {_short(self.ratio)}, σ² = {_short(self.noise_var)} "
                                        f"({self.noise_mode})")


def _short(value: float | str) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _train(lr: float, epochs: int) -> TrainConfig:
    return TrainConfig(epochs=epochs, lr=lr, batch_size=16, weight_decay=0.01, warmup_ratio=0.0)


# NPO on the embedded benchmark, each method at the config `grin-unlearn tune configs/tune/npo.yaml` chose
# for it (runs/tune_npo/tune.json, values as stored; docs/tuning.md: 20 trials per method on validation
# authors, rule = issue #14's keyword target). Unmasked: trial 18 of npo_none; GRIN: trial 16 of npo_grin.
DEFAULT_FULL = MethodSettings(_train(0.0007498685737410166, 11), ObjectiveHyperparams(alpha=27.97078624672543))
DEFAULT_GRIN = MethodSettings(_train(0.000429667236817095, 12), ObjectiveHyperparams(alpha=13.667693141187614),
                              ratio=0.696686015327227, noise_var=0.00013635057108731186, noise_mode="absolute")


@dataclass
class DemoConfig:
    """What the demo runs: the objective unmasked (``full``) and under GRIN (``grin``), each with its settings."""

    embedded: EmbeddedConfig = field(default_factory=EmbeddedConfig)
    objective: str = "npo"
    full: MethodSettings = field(default_factory=lambda: replace(DEFAULT_FULL))
    grin: MethodSettings = field(default_factory=lambda: replace(DEFAULT_GRIN))
    eval: EvalConfig = field(default_factory=EvalConfig)
    attacks: bool = True  # the robustness section (demo_robustness.py)
    # Set: the real-model benchmark (SmolLM2 fine-tuned on the world, real_demo.py) replaces `embedded`.
    real: RealBenchmarkConfig | None = None
    relearn: RelearnSettings = field(default_factory=lambda: replace(RELEARN))
    # Unlearning, evaluation and attacks under this precision (grin_unlearn.precision).
    precision: str = "fp32"
    # The set roles the attacked models are evaluated on (None: every set; the section reads forget metrics).
    attack_roles: tuple[str, ...] | None = None

    @property
    def forget_split(self) -> str:
        return (self.real or self.embedded).forget_split

    @property
    def retain_split(self) -> str:
        return (self.real or self.embedded).retain_split

    def prepare(self, cache_dir=None, log=print):
        """The benchmark's world, target and oracle folders (built or reused)."""
        return prepare_benchmark(self.real or self.embedded, cache_dir, log=log)

    def benchmark_text(self) -> str:
        if self.real is not None:
            real = self.real
            return (f"Real-model benchmark: `{real.model}` (SmolLM2-135M-Instruct from its PyPI wheel) fine-tuned in its "
                    f"chat template (system prompt \"{real.system_prompt}\") on {real.authors} fictitious authors "
                    f"(+{real.holdout_authors} holdout), {real.questions_per_author} questions each, plus world facts; "
                    "`real_knowledge` holds general questions the base answered correctly and no model was trained on")
        embedded = self.embedded
        return (f"Embedded benchmark: {embedded.authors} fictitious authors (+{embedded.holdout_authors} holdout), "
                f"{embedded.questions_per_author} questions each, {embedded.tokenizer} tokenizer, "
                + ("base pretrained on the background corpus" if embedded.pretrain is not None else "untrained base"))

    def unlearn_configs(self) -> dict[str, UnlearnConfig]:
        name = self.objective.upper() if len(self.objective) <= 4 else self.objective
        full, grin = self.full, self.grin
        return {
            f"{name} (full)": UnlearnConfig(self.objective, SelectionConfig(scorer="none"), NoiseConfig(noise_var=0.0),
                                            replace(full.train), replace(full.hyperparams)),
            f"GRIN + {name}": UnlearnConfig(self.objective, SelectionConfig(scorer="grin", ratio=grin.ratio),
                                            NoiseConfig(noise_var=grin.noise_var, noise_mode=grin.noise_mode, noise_probe=True),
                                            replace(grin.train), replace(grin.hyperparams)),
        }


def _made_from(out_dir: Path, target: Path) -> bool:
    """Whether every unlearning run under ``out_dir`` started from ``target`` (runs.SOURCE_FILE)."""
    sources = list(out_dir.glob(f"*/{SOURCE_FILE}"))
    runs = [p for p in out_dir.iterdir() if p.is_dir() and (p / "config.json").is_file()]
    expected = str(Path(target).resolve())
    return len(sources) >= len(runs) and all(json.loads(p.read_text(encoding="utf-8")).get("model") == expected
                                             for p in sources)


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in label.lower()).strip("-").replace("--", "-")


class Stages:
    """Prints which stage is running and how long each took."""

    def __init__(self, log=print):
        self.log, self.start = log, time.perf_counter()

    def __call__(self, message: str) -> None:
        self.log(f"[{time.perf_counter() - self.start:6.1f}s] {message}", flush=True)


def run_demo(out_dir: str | Path = "runs/demo", config: DemoConfig | None = None, cache_dir=None,
             fresh: bool = False, log=print) -> tuple[list[dict], Path]:
    config = config or DemoConfig()
    stage = Stages(log)
    assets = config.prepare(cache_dir, log=stage)
    with autocast(config.precision):
        return _run_demo(Path(out_dir), config, assets, fresh, stage)


def _run_demo(out_dir: Path, config: DemoConfig, assets, fresh: bool, stage) -> tuple[list[dict], Path]:
    if out_dir.exists() and not fresh and not _made_from(out_dir, assets.target):
        stage(f"{out_dir} holds a demo of another benchmark build: starting it afresh")
        fresh = True
    if fresh and out_dir.exists():
        shutil.rmtree(out_dir)
    forget, retain = config.forget_split, config.retain_split
    roles = default_roles(assets.world, forget, retain)
    stage("evaluating the oracle (retrained without the forget authors)")
    cached = cached_eval_name(forget, config.eval, config.precision)
    oracle = evaluate_model_dir(assets.oracle, assets.world, roles, assets.oracle / cached,
                                config.eval)
    oracle["aggregates"] = aggregate(oracle["sets"], oracle)  # forget quality against itself: 1.0
    rows = [metrics_row("oracle", oracle)]
    stage("evaluating the target (trained on everything)")
    target = evaluate_model_dir(assets.target, assets.world, roles, assets.target / cached,
                                config.eval, oracle)
    rows.insert(0, metrics_row("target", target))
    evals, run_dirs = {"target": target}, {"target": assets.target, "oracle": assets.oracle}
    for label, unlearn_config in config.unlearn_configs().items():
        stage(f"unlearning: {label}")
        cell = run_cell(assets.target, assets.world, forget, retain, roles, unlearn_config,
                        out_dir / _slug(label), config.eval, oracle, log=lambda *a, **k: None)
        rows.append(metrics_row(label, cell.eval, (finished_timing(cell.out_dir) or {}).get("total")))
        evals[label] = cell.eval
        run_dirs[label] = cell.out_dir / "model"
    robustness = []
    if config.attacks:
        stage("attacking every model: 4-bit quantization, relearning")
        attacked = {n: r for n, r in roles.items() if config.attack_roles is None or r in config.attack_roles}
        robustness = robustness_section(out_dir, run_dirs, load_eval_sets(assets.world, attacked), attacked,
                                        config.relearn)
    stage("writing the report")
    chance = chance_table(assets.world, forget, retain, oracle, target)
    report = write_demo_report(out_dir, rows, config, chance, truth_ratio_lines(out_dir, evals, oracle) + robustness)
    stage(f"done: {report}")
    return rows, report


def cached_eval_name(forget: str, eval_config: EvalConfig, precision: str = "fp32") -> str:
    """The file the demo caches a target's or oracle's evaluation in, inside the model folder: one per
    forget split, evaluation settings and precision, so a demo with other settings does not reuse another's."""
    settings = eval_config.to_dict() | ({"precision": precision} if precision != "fp32" else {})
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return f"eval-{forget}-{digest}.json"


def chance_table(world: Path, forget: str, retain: str, oracle: dict, target: dict) -> str:
    """Keyword accuracy on the forget split by attribute: the guessing baseline, the oracle, the target.

    Chance = always answering the value most frequent among the retain authors
    (:func:`grin_unlearn.data.world.chance_levels`): the best a model that never saw the forget
    authors can do without luck.
    """
    records = {name: load_qa_split(world, name) for name in (forget, retain)}
    levels = chance_levels(records, retain, forget)
    lines = ["| attribute | chance | oracle | target |", "|---|---|---|---|"]
    for attribute, level in levels.items():
        cells = [f"{level:.2f}"]
        for result in (oracle, target):
            hits = [v for r, v in zip(records[forget], result["sets"][forget]["per_item"]["keyword_accuracy"])
                    if r.get("attribute") == attribute]
            cells.append(f"{sum(hits) / len(hits):.2f}" if hits else "–")
        lines.append(f"| {attribute} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def noise_lines(record: dict | None) -> list[str]:
    """Report lines on the forget gradient over the selected weights before and after the noise."""
    gradient = (record or {}).get("forget_gradient")
    if not gradient:
        return []
    before, after = gradient["before_noise"], gradient["after_noise"]
    ratio = gradient.get("l2_ratio")
    return ["## Does the noise enlarge the forget gradient?", "",
            f"Forget-set gradient over the {before['weights']:,} selected weights (`noise.json`): L2 norm "
            f"{before['l2']:.4g} before the noise, {after['l2']:.4g} after"
            + (f" (× {ratio:.3g})" if ratio is not None else "")
            + f"; mean |g| {before['mean_abs']:.3g} → {after['mean_abs']:.3g}.", ""]


def truth_ratio_lines(out_dir: Path, evals: dict[str, dict], oracle: dict) -> list[str]:
    """Report section: the forget-set truth-ratio distributions behind forget quality, plot and table
    (:mod:`grin_unlearn.experiments.truth_ratio_shift`)."""
    rows = shift_rows(evals, oracle)
    if len(rows) < 2:
        return []
    plot_truth_ratio_cdfs(evals, oracle, out_dir / "truth_ratios.png")
    return ["## Forget truth ratios against the oracle's", "",
            "Forget quality compares these distributions (KS test): ln R = 0 when the model cannot tell the "
            "correct answer from the perturbed ones, below 0 when it prefers the correct one. A model can stop "
            "generating the forget answers (low keyword accuracy) and still rank them like the target.", "",
            "![forget truth ratios](truth_ratios.png)", "", shift_table(rows), ""]


def write_demo_report(out_dir: Path, rows: list[dict], config: DemoConfig, chance: str = "",
                      truth_ratios: list[str] = ()) -> Path:
    plot_metric_bars(rows, out_dir / "metrics.png")
    plot_quality_utility(rows, out_dir / "quality_utility.png")
    grin_dir = out_dir / _slug(list(config.unlearn_configs())[1])
    density = grin_dir / "density.png"
    lines = [
        "# grin-unlearn demo", "",
        config.benchmark_text()
        + f"; forget split `{config.forget_split}`, objective `{config.objective}`"
        + (f", {config.precision} autocast over fp32 weights" if config.precision != "fp32" else "") + ". Unmasked: "
        f"{config.full.text()}. GRIN: {config.grin.text(masked=True)}. "
        "Wall time is the unlearning run (scoring + training).", "",
        markdown_table(rows), "",
        "Forget quality: KS-test p-value of the forget truth ratios against the oracle's (TOFU). "
        "Model utility: harmonic mean of probability, ROUGE-L and truth ratio on retain and world facts.", "",
        "![metrics](metrics.png)", "", "![forget quality vs model utility](quality_utility.png)", "",
    ]
    lines += list(truth_ratios)
    if chance:
        lines += ["## Forget-split keyword accuracy by attribute", "",
                  "Chance: always answering the most frequent value among the retain authors.", "", chance, ""]
    if density.is_file():
        lines += [f"![density of selected weights]({density.relative_to(out_dir)})", ""]
    lines += noise_lines(noise_record(grin_dir))
    return atomic_write_text(out_dir / "report.md", "\n".join(lines))
