"""`grin-unlearn attack quantize|relearn`: does the forgetting survive quantization or a few steps of
relearning? Evaluates the attacked model (and, with --target/--oracle, the same attack on them) and
writes DIR/attack.json with the share of forgotten knowledge each attack brings back."""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

from ..errors import UserInputError
from .common import add_data_arguments, add_model_arguments, load_eval_sets_for, prompt_format_from_args

NAME = "attack"
HELP = ("attack an unlearned model to tell forgetting from hiding: weight quantization (RTN, 8/4 bits) or "
        "relearning on half of each forget entity's records; writes DIR/attack.json (recovery share per metric)")
ATTACK_FILE = "attack.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=["quantize", "relearn"], help="the attack")
    add_model_arguments(parser, max_length=False)
    add_data_arguments(parser)
    parser.add_argument("--target", help="the target model (before unlearning): attacked too, for the recovery share")
    parser.add_argument("--oracle", help="the oracle model (never saw the forget set): attacked too, for the recovery "
                                         "share and forget quality")
    parser.add_argument("--out", required=True, help="folder for attack.json (created if missing)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing DIR/attack.json")
    parser.add_argument("--protocol", default="fast", choices=["fast", "tofu"],
                        help="evaluation protocol of every attacked model (default fast: 32 new tokens)")
    parser.add_argument("--max-items", type=int, default=None, help="evaluate only the first N items of every set")
    parser.add_argument("--max-length", type=int, default=512, help="max tokens per sequence (default 512)")
    quantize = parser.add_argument_group("quantize")
    quantize.add_argument("--bits", type=int, nargs="+", default=[8, 4], help="bit widths (default 8 4; 16 = bf16)")
    quantize.add_argument("--group-size", type=int, default=32,
                          help="input weights per quantization group (default 32; 0 = per output channel)")
    relearn = parser.add_argument_group("relearn")
    relearn.add_argument("--steps", type=int, nargs="+", default=[0, 5, 10, 20],
                         help="evaluate after these numbers of relearning steps (default 0 5 10 20)")
    relearn.add_argument("--lr", type=float, default=1e-3, help="relearning learning rate (default 1e-3)")
    relearn.add_argument("--relearn-batch-size", type=int, default=4, help="records per relearning step (default 4)")
    relearn.add_argument("--relearn-on", choices=["forget", "retain"], default="forget",
                         help="forget: the relearn half of each forget entity (default); retain: as many retain "
                              "records, no forget facts (the related-text variant)")
    relearn.add_argument("--seed", type=int, default=0, help="seed of the relearn/probe split and the batch order")


def run(args: argparse.Namespace) -> int:
    from ..evaluation import EvalConfig
    from ..evaluation.attacks.quantize import QuantizeConfig
    from ..io_utils import atomic_write_json
    from ..models import load_tokenizer

    out = Path(args.out).expanduser()
    if (out / ATTACK_FILE).exists() and not args.overwrite:
        raise UserInputError(f"--out: {out / ATTACK_FILE} already exists (pass --overwrite to replace it)")
    plan = load_eval_sets_for(args)
    forget = next((name for name, role in plan.roles.items() if role == "forget"), None)
    if forget is None:
        raise UserInputError("attack: the sets have no forget set (expected a TOFU-style forget split)")
    config = EvalConfig.for_protocol(args.protocol, max_items=args.max_items, mia=False)
    fmt = prompt_format_from_args(args, max_length=args.max_length)
    quant = [QuantizeConfig(bits, args.group_size or None) for bits in args.bits] if args.kind == "quantize" else []
    paths = {"unlearned": args.model, "target": args.target, "oracle": args.oracle}
    models = {role: path for role, path in paths.items() if path}
    tokenizer = load_tokenizer(args.model, trust_remote_code=args.trust_remote_code)
    if args.kind == "quantize":
        report = _quantize(models, tokenizer, plan, fmt, config, quant, args)
    else:
        report = _relearn(models, tokenizer, plan, forget, fmt, config, args, out)
    report.update(models={role: str(path) for role, path in models.items()}, data=str(plan.data),
                  protocol=args.protocol)
    atomic_write_json(out / ATTACK_FILE, report)
    _print(report)
    print(f"\nwrote {out / ATTACK_FILE}")
    return 0


def _load(path: str, args):
    from ..models import load_model

    return load_model(path, dtype=args.dtype, trust_remote_code=args.trust_remote_code)


def _aggregates(model, tokenizer, sets, roles, fmt, config, oracle, is_oracle: bool = False) -> tuple[dict, dict]:
    """The aggregates and the whole result of one evaluation; the unattacked oracle (``is_oracle``) is
    compared with itself, so its forget quality is the KS p-value of identical samples, 1."""
    from ..evaluation import evaluate
    from ..evaluation.report import aggregate

    result = evaluate(model, tokenizer, sets, roles, fmt, config, oracle)
    if is_oracle:
        result["aggregates"] = aggregate(result["sets"], result)
    return result["aggregates"], result


def _quantize(models: dict, tokenizer, plan, fmt, config, settings, args) -> dict:
    from ..evaluation.attacks import changed_buckets, quantize_model, recovery_table

    order = [r for r in ("oracle", "target", "unlearned") if r in models]
    runs: dict[str, dict[str, dict]] = {role: {} for role in order}
    weights = {}
    oracle_result = None
    for role in order:
        model = _load(models[role], args)
        weights[role] = model
        aggregates, result = _aggregates(model, tokenizer, plan.sets, plan.roles, fmt, config, oracle_result,
                                         is_oracle=role == "oracle")
        oracle_result = result if role == "oracle" else oracle_result
        runs[role]["none"] = aggregates
        for setting in settings:
            attacked = copy.deepcopy(model)
            info = quantize_model(attacked, setting)
            runs[role][setting.label] = {**_aggregates(attacked, tokenizer, plan.sets, plan.roles, fmt, config,
                                                       oracle_result)[0], "quantization": info}
    report = {"attack": "quantize", "settings": [s.label for s in settings], "runs": runs}
    if {"target", "oracle"} <= set(runs):
        report["recovery"] = {label: recovery_table(runs["unlearned"][label], runs["oracle"][label],
                                                    runs["target"]["none"], runs["oracle"]["none"])
                              for label in ["none", *report["settings"]]}
    if "target" in weights:
        report["changed_buckets"] = {s.label: changed_buckets(weights["unlearned"], weights["target"], s)
                                     for s in settings if s.bits != 16}
    return report


def _relearn(models: dict, tokenizer, plan, forget: str, fmt, config, args, out: Path) -> dict:
    from ..evaluation.attacks import recovery_table, relearn_curve, split_relearn_probe

    records = plan.sets[forget]
    relearn_idx, probe_idx = split_relearn_probe(records, args.seed)
    if not relearn_idx:
        raise UserInputError(f"relearn: set '{forget}' has no entity with 2 or more records to split")
    retain = next((plan.sets[n] for n, role in plan.roles.items() if role == "retain"), [])
    train = [records[i] for i in relearn_idx] if args.relearn_on == "forget" else retain[:len(relearn_idx)]
    sets = dict(plan.sets, **{forget: [records[i] for i in probe_idx]})
    order = [r for r in ("oracle", "target", "unlearned") if r in models]
    curves: dict[str, dict[int, dict]] = {}
    oracle: dict = {}  # the unattacked oracle's result, once evaluated: forget quality's reference
    first = min(args.steps)
    for role in order:
        model = _load(models[role], args)

        def evaluate_at(k, model=model, role=role):
            unattacked_oracle = role == "oracle" and k == first
            aggregates, result = _aggregates(model, tokenizer, sets, plan.roles, fmt, config, oracle.get("result"),
                                             is_oracle=unattacked_oracle)
            if unattacked_oracle:
                oracle["result"] = result
            return aggregates

        curves[role] = relearn_curve(model, tokenizer, train, args.steps, args.lr, args.relearn_batch_size, args.seed,
                                     evaluate_at, fmt)
    report = {"attack": "relearn", "steps": sorted(set(args.steps)), "lr": args.lr,
              "batch_size": args.relearn_batch_size, "relearn_on": args.relearn_on, "seed": args.seed,
              "split": {"set": forget, "relearn": relearn_idx, "probe": probe_idx},
              "runs": {role: {str(k): v for k, v in curve.items()} for role, curve in curves.items()}}
    if {"target", "oracle"} <= set(curves):
        report["recovery"] = {str(k): recovery_table(curves["unlearned"][k], curves["oracle"][k],
                                                     curves["target"][first], curves["oracle"][first])
                              for k in sorted(curves["unlearned"])}
        _plot_recovery(report["recovery"], out / "recovery.png")
    return report


def _plot_recovery(recovery: dict[str, dict], path: Path) -> None:
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..io_utils import atomic_write_bytes

    fig = Figure(figsize=(7, 4))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    steps = [int(k) for k in recovery]
    metrics = sorted({m for table in recovery.values() for m in table})
    plotted = 0
    for metric in metrics:
        values = [recovery[str(k)].get(metric, {}).get("recovery") for k in steps]
        if any(v is not None for v in values):
            ax.plot(steps, [float("nan") if v is None else v for v in values], marker="o", label=metric)
            plotted += 1
    ax.axhline(0, color="gray", linewidth=0.8)
    ax.axhline(1, color="gray", linewidth=0.8, linestyle="--")
    ax.set_xlabel("relearning steps")
    ax.set_ylabel("recovered share of forgotten knowledge")
    if plotted:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no recovery share: the target and the oracle do not differ", ha="center",
                transform=ax.transAxes)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())


def _print(report: dict) -> None:
    recovery = report.get("recovery")
    if not recovery:
        print("(pass --target and --oracle for the recovery share)")
        return
    print(f"{'setting':<28} {'metric':<26} {'attacked':>9} {'oracle att.':>11} {'target':>8} {'oracle':>8} {'recovery':>9}")
    for setting, table in recovery.items():
        for metric, row in table.items():
            cells = [row[k] for k in ("attacked", "oracle_attacked", "target", "oracle", "recovery")]
            text = ["-" if v is None else f"{v:.3f}" for v in cells]
            print(f"{setting:<28} {metric:<26} {text[0]:>9} {text[1]:>11} {text[2]:>8} {text[3]:>8} {text[4]:>9}")
