"""Evaluation during training (``--eval-every N``): forget and retain metrics against steps, and a
stopping rule.

Before the first step and after every ``N``-th optimizer step, :class:`TrajectoryCallback` evaluates the
model on the first ``eval_max_items`` records of the run's forget and retain sets with the ``fast``
protocol (32 new tokens, no membership scores; :data:`~grin_unlearn.evaluation.PROTOCOLS`) and appends
the cross-set numbers (:data:`~grin_unlearn.training.stop_rule.MONITOR_METRICS`) to
``<run>/trajectory.json``, rewritten atomically after each evaluation; ``trajectory.png`` plots them
against steps when training ends. With a stopping rule (``--stop-when``) training stops after the
first evaluation where it holds, and ``trajectory.json`` records that step. Model utility here is the
harmonic mean over the retain set's components only (the run has no other set).
"""

from __future__ import annotations

import io
import time
from pathlib import Path

from transformers import TrainerCallback

from ..errors import UserInputError
from ..io_utils import atomic_write_bytes, atomic_write_json
from .stop_rule import MONITOR_METRICS, parse_stop_rule, rule_holds

TRAJECTORY_FILE = "trajectory.json"
TRAJECTORY_PLOT = "trajectory.png"


class TrajectoryCallback(TrainerCallback):
    """Evaluates every ``monitor.eval_every`` steps, writes the trajectory, applies the stopping rule."""

    def __init__(self, model, tokenizer, forget: list[dict], retain: list[dict], fmt, monitor, out_dir: Path):
        from ..evaluation import EvalConfig

        self.model, self.tokenizer, self.fmt, self.every = model, tokenizer, fmt, monitor.eval_every
        self.sets = {"forget": forget[:monitor.eval_max_items], "retain": retain[:monitor.eval_max_items]}
        self.config = EvalConfig.for_protocol("fast", mia=False)
        self.rule = parse_stop_rule(monitor.stop_when)
        self.out_dir = Path(out_dir)
        self.record = {"eval_every": self.every, "eval_max_items": monitor.eval_max_items, "protocol": "fast",
                       "stop_when": [str(c) for c in self.rule], "stopped_at_step": None, "points": []}

    def evaluate_now(self, step: int) -> dict:
        from ..evaluation import evaluate

        start = time.perf_counter()
        roles = {name: name for name in self.sets if self.sets[name]}
        result = evaluate(self.model, self.tokenizer, {k: self.sets[k] for k in roles}, roles, self.fmt, self.config)
        point = {"step": step, **{k: result["aggregates"].get(k) for k in MONITOR_METRICS},
                 "seconds": round(time.perf_counter() - start, 3)}
        self.record["points"].append(point)
        return point

    def _check(self, step: int, control) -> None:
        point = self.evaluate_now(step)
        if rule_holds(self.rule, point):
            self.record["stopped_at_step"] = step
            control.should_training_stop = True
        atomic_write_json(self.out_dir / TRAJECTORY_FILE, self.record)

    def on_train_begin(self, args, state, control, **kwargs):
        if not self.record["points"]:
            self._check(state.global_step, control)  # the starting point (a met rule stops before step 1)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0:
            self._check(state.global_step, control)

    def on_train_end(self, args, state, control, **kwargs):
        if self.record["points"]:
            plot_trajectory(self.record, self.out_dir / TRAJECTORY_PLOT)


def check_monitor_input(monitor, forget: list[dict], retain: list[dict], world_size: int = 1) -> None:
    """Refuse, before any work, what evaluation during training cannot read: raw-text sets (the
    trajectory's metrics are question/answer ones) and several processes."""
    from ..data.formatting import is_text_record

    if not monitor.eval_every:
        return
    if any(is_text_record(r) for r in forget[:1] + retain[:1]):
        raise UserInputError("--eval-every: evaluation during training reads question/answer records; this run's "
                             "forget or retain set holds raw text (evaluate its checkpoints with `grin-unlearn eval`)")
    if world_size > 1:
        raise UserInputError("--eval-every: evaluation during training runs in one process (launch without "
                             "torchrun / accelerate for it)")


def monitor_callbacks(model, tokenizer, forget, retain, fmt, monitor, out_dir: Path) -> list:
    """``[TrajectoryCallback]`` when ``monitor.eval_every`` > 0, else ``[]`` (its input checked before any
    work by :func:`check_monitor_input`). A trajectory left in ``out_dir`` by an earlier run is removed
    first (it would pass for this run's; a resumed run's trajectory starts again at the step it resumes
    from)."""
    for name in (TRAJECTORY_FILE, TRAJECTORY_PLOT):
        (Path(out_dir) / name).unlink(missing_ok=True)
    if not monitor.eval_every:
        return []
    return [TrajectoryCallback(model, tokenizer, forget, retain, fmt, monitor, out_dir)]


def plot_trajectory(record: dict, path: Path) -> Path:
    """Forget (left) and retain (right) metrics against steps; the stopping step as a dashed line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), dpi=110)
    FigureCanvasAgg(figure)
    steps = [p["step"] for p in record["points"]]
    for index, role in enumerate(("forget", "retain")):
        axes = figure.add_subplot(1, 2, index + 1)
        for key in MONITOR_METRICS:
            if (key.startswith(role) or (role == "retain" and key == "model_utility")) and \
                    any(p.get(key) is not None for p in record["points"]):
                axes.plot(steps, [p.get(key) for p in record["points"]], marker="o", label=key)
        if record.get("stopped_at_step") is not None:
            axes.axvline(record["stopped_at_step"], linestyle="--", color="grey", label="stopped")
        axes.set_xlabel("optimizer step")
        axes.set_title(f"{role} set" + (" (↓ better)" if role == "forget" else " (↑ better)"))
        axes.legend(fontsize=7)
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    return atomic_write_bytes(path, buffer.getvalue())
