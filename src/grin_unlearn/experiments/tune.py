"""`grin-unlearn tune`: a fair, resumable tuner on Optuna; the chosen configs rerun with several seeds.

For every method (objective × scorer) of a tuner file (:mod:`grin_unlearn.experiments.tune_spec`):

1. **Trials on the validation split.** One Optuna study per method, all in ``<out>/study.db``
   (SQLite: ``optuna-dashboard sqlite:///<out>/study.db`` or ``optuna.load_study`` inspect it). Each
   method gets the same number of finished trials over its own space; a trial unlearns the target
   with the sampled config on the validation forget split (:func:`~grin_unlearn.experiments.runs.run_cell`,
   folder ``<out>/trials/<method>/<hash of the params>``) and reports the two objectives *forget quality*
   and *model utility* (both maximised; multi-objective TPE, seeded). The selection rule's bounds are
   also given to Optuna as constraints (``value ≤ 0`` is feasible), so the sampler favours points
   that can be chosen. A trial whose training stops on a NaN/inf loss is a finished, failed trial (it
   used its share of the budget).
2. **Selection.** :func:`select_trial` applies the file's rule to the finished trials.
3. **Reruns.** The chosen config runs on the reported forget split once per seed
   (``<out>/final/<method>/<params hash>/seed<k>``).

**Resuming.** Rerunning the command continues: finished trials are read from the storage and never
rerun; a trial left *running* by a killed process is marked failed-interrupted (not counted) and its
parameters are enqueued, so the next trial retries exactly that point and reuses whatever its run
folder holds (a finished run is only re-evaluated if needed). The sampler's random state is not
restored: a restarted sampler is seeded with the file's seed plus the trials already run, so the
trials drawn after a restart differ from those of an uninterrupted run (and do not replay the first
ones); a trial that draws the point of an earlier one is not counted. One process at a time per
output folder.

``<out>/tune.json`` (rewritten after every trial) holds the spec, each trial's params and metrics, the
choice and the reruns; :mod:`grin_unlearn.experiments.tune_report` turns it into ``report.md`` + PNGs.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable

from ..config import config_from_mapping, load_yaml
from ..errors import TrainingStoppedError, UserInputError
from ..evaluation import load_eval
from ..io_utils import atomic_write_json
from .report import metrics_row
from .runs import run_cell
from .tune_phases import Phase, benchmark_validation, reported_phase, user_validation
from .tune_spec import Method, TuneSpec, asdict, params_key, parse_tune_spec, resolve_rule, trial_mapping

STATE_FILE = "tune.json"
STORAGE_FILE = "study.db"
COST_FILE = "cost.json"  # wall and CPU seconds a cell took when it ran (kept for reused cells)
OBJECTIVES = ("forget_quality", "model_utility")  # what each study maximises
INTERRUPTED = "interrupted"
# Tuner-file keys a resumed run may change: more trials or seeds, other methods, another selection rule.
RESUMABLE_CHANGES = ("trials", "seeds", "objectives", "scorers", "select")  # user attribute of a trial a killed process left running


# --- the selection rule --------------------------------------------------------------------------

def _meets(row: dict, bounds: dict) -> bool:
    for metric, bound in bounds.items():
        value = row.get(metric)
        if value is None or math.isnan(value):
            return False
        if "min" in bound and value < bound["min"] or "max" in bound and value > bound["max"]:
            return False
    return True


def select_trial(rows: list[dict], rule: dict) -> tuple[dict | None, str]:
    """The trial the rule picks among ``rows`` (finished trials with metrics), and why.

    Among the rows meeting every bound of ``rule["subject_to"]``, the highest ``rule["maximize"]``;
    if none meets them, the highest ``rule["fallback"]``. Rows without the metric are skipped; ties go
    to the lower trial ``number``. (None, reason) when no row has the metric.
    """
    def best(candidates: list[dict], metric: str) -> dict | None:
        usable = [r for r in candidates if r.get(metric) is not None and not math.isnan(r[metric])]
        return min(usable, key=lambda r: (-r[metric], r["number"])) if usable else None

    bounds = rule.get("subject_to") or {}
    feasible = [r for r in rows if _meets(r, bounds)]
    text = " and ".join(f"{m} {'≥' if 'min' in b else '≤'} {b.get('min', b.get('max'))}" for m, b in bounds.items())
    chosen = best(feasible, rule["maximize"])
    if chosen is not None:
        return chosen, f"highest {rule['maximize']} among {len(feasible)} trial(s) with {text or 'no bound'}"
    chosen = best(rows, rule["fallback"])
    if chosen is None:
        return None, "no finished trial"
    return chosen, f"no trial met {text}: fallback, highest {rule['fallback']}"


def _constraints(metrics: dict, rule: dict) -> dict[str, float]:
    """Optuna constraint values of the rule's bounds (``<= 0`` is feasible)."""
    out = {}
    for metric, bound in (rule.get("subject_to") or {}).items():
        value = metrics.get(metric)
        value = -1e9 if value is None else value  # a missing metric is infeasible
        out[metric] = bound["min"] - value if "min" in bound else value - bound["max"]
    return out


# --- studies -------------------------------------------------------------------------------------

def open_study(storage_path: Path, name: str, seed: int, trials: int):
    """The multi-objective study ``name`` in the SQLite file ``storage_path`` (created or loaded).

    A loaded study's sampler is seeded with ``seed`` plus its number of trials: seeded as at the
    start, a restarted sampler would draw the points of the first run's first trials again."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{storage_path}",
                                directions=["maximize"] * len(OBJECTIVES), load_if_exists=True)
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.get_trials(deepcopy=False)),
                                               n_startup_trials=max(1, trials // 2), multivariate=True)
    return study


def counted(trial) -> bool:
    """A trial that used its share of the budget: finished, or failed on its own (not interrupted)."""
    from optuna.trial import TrialState

    return trial.state == TrialState.COMPLETE or (trial.state == TrialState.FAIL
                                                  and not trial.user_attrs.get(INTERRUPTED))


def counted_trials(trials) -> list:
    """The :func:`counted` trials, each point once: a trial with the params of an earlier counted one
    (a sampler that drew it again) adds nothing to the search, so it does not use budget."""
    seen, out = set(), []
    for trial in trials:
        key = json.dumps(trial.params, sort_keys=True)
        if counted(trial) and key not in seen:
            seen.add(key)
            out.append(trial)
    return out


def recover_interrupted(study) -> list[int]:
    """Mark trials left RUNNING by a killed process as failed-interrupted and enqueue their params."""
    from optuna.trial import Trial, TrialState

    numbers = []
    waiting = [t.system_attrs.get("fixed_params") for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))]
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        Trial(study, frozen._trial_id).set_user_attr(INTERRUPTED, True)
        study.tell(frozen.number, state=TrialState.FAIL)
        if frozen.params not in waiting:  # (Optuna's skip_if_exists would also match the failed trial itself)
            study.enqueue_trial(frozen.params)
        numbers.append(frozen.number)
    return numbers


def run_trials(study, budget: int, suggest: Callable, evaluate: Callable[[dict], dict], rule: dict,
               log=print, on_trial: Callable[[], None] = lambda: None) -> None:
    """Ask/tell until ``budget`` trials are :func:`counted`: ``suggest(trial) -> params``,
    ``evaluate(params) -> metrics`` (with :data:`OBJECTIVES`, ``seconds`` and ``dir``)."""
    from optuna.trial import TrialState

    retried = recover_interrupted(study)
    if retried:
        log(f"{study.study_name}: retrying interrupted trial(s) {retried}")
    while (done := len(counted_trials(study.get_trials(deepcopy=False)))) < budget:
        trial = study.ask()
        params = suggest(trial)
        log(f"{study.study_name}: trial {done + 1} {json.dumps(params)}")
        try:
            metrics = evaluate(params)
        except TrainingStoppedError as err:  # a diverging config is an outcome, not a crash
            trial.set_user_attr("error", str(err))
            study.tell(trial, state=TrialState.FAIL)
            log(f"{study.study_name}: trial failed ({err})")
            on_trial()
            continue
        missing = [k for k in OBJECTIVES if metrics.get(k) is None]
        if missing:
            raise UserInputError(f"trial evaluation has no {', '.join(missing)} (the validation phase needs an oracle)")
        for key, value in metrics.items():
            trial.set_user_attr(key, value)
        for key, value in _constraints(metrics, rule).items():
            trial.set_constraint(key, value)
        study.tell(trial, [metrics[k] for k in OBJECTIVES])
        on_trial()


def trial_rows(study) -> list[dict]:
    """Every counted trial (:func:`counted_trials`) as ``{number, state, params, <metrics>...}``."""
    return [{"number": t.number, "state": t.state.name, "params": dict(t.params), **t.user_attrs}
            for t in counted_trials(study.get_trials(deepcopy=False))]


def suggest_params(trial, space) -> dict:
    """The method's point: one Optuna suggestion per :class:`~grin_unlearn.experiments.tune_spec.Param`."""
    params = {}
    for p in space:
        if p.choices is not None:
            params[p.key] = trial.suggest_categorical(p.key, list(p.choices))
        elif p.is_int:
            params[p.key] = trial.suggest_int(p.key, p.low, p.high, step=p.step or 1, log=p.log)
        else:
            params[p.key] = trial.suggest_float(p.key, float(p.low), float(p.high), log=p.log)
    return params


# --- the whole run -------------------------------------------------------------------------------

def _cell_metrics(result) -> dict:
    row = metrics_row("", result.eval)
    row.pop("method")
    row.update(seconds=round(result.seconds, 2), reused=result.reused)
    return row


def run_method_cell(spec: TuneSpec, phase: Phase, method: Method, params: dict, seed: int, folder: Path,
                    out_dir: Path) -> dict:
    """Run (or reuse) one cell of ``method`` with ``params`` and ``seed`` in ``phase``; its metrics,
    wall time and folder (relative to ``out_dir``)."""
    mapping = trial_mapping(spec, method, params)
    mapping.setdefault("train", {})["seed"] = seed
    config = config_from_mapping(mapping, f"{spec.source}: {method.name} {params}")
    cpu = time.process_time()  # CPU seconds of this process, all threads
    result = run_cell(phase.model_dir, phase.data, phase.forget, phase.retain, phase.roles, config, folder,
                      spec.setting.eval, phase.oracle, log=lambda *a, **k: None, precision=spec.setting.precision)
    metrics = {**_cell_metrics(result), "dir": str(folder.relative_to(out_dir))}
    if not result.reused:
        atomic_write_json(folder / COST_FILE, {"seconds": metrics["seconds"],
                                               "cpu_seconds": round(time.process_time() - cpu, 2)})
    # What the cell cost when it ran (a reused cell costs nothing now, but its price is part of the run's).
    cost = json.loads((folder / COST_FILE).read_text()) if (folder / COST_FILE).is_file() else \
        {"seconds": json.loads((folder / "cell.json").read_text()).get("seconds") if (folder / "cell.json").is_file() else None}
    return {**metrics, "seconds": cost.get("seconds"), "cpu_seconds": cost.get("cpu_seconds")}


def run_tune(spec_path: str | Path, out_dir: str | Path, cache_dir=None, log=print, overrides: dict | None = None) -> dict:
    """Tune every method of ``spec_path`` into ``out_dir``, rerun the chosen configs; return the state.

    ``overrides`` replace top-level keys of the file (the CLI's ``--trials``, ``--scorers``, ``--seeds``)."""
    start = time.perf_counter()
    spec = parse_tune_spec({**load_yaml(spec_path), **(overrides or {})}, str(spec_path))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state_path = out_dir / STATE_FILE
    previous = json.loads(state_path.read_text()) if state_path.is_file() else {}
    if previous:  # trials are stored by method and params only: what else shapes a result must not change
        fixed = lambda raw: {k: v for k, v in raw.items() if k not in RESUMABLE_CHANGES}  # noqa: E731
        changed = sorted(k for k in set(fixed(spec.raw)) | set(fixed(previous.get("spec", {})))
                         if spec.raw.get(k) != previous["spec"].get(k))
        if changed:
            raise UserInputError(f"{out_dir} holds a tuner run whose file differs in {', '.join(changed)} "
                                 "(only trials, seeds, methods and the rule may change on a resume): tune into a new --out")
    evaluation = spec.setting.eval
    validation = (benchmark_validation(spec, out_dir, cache_dir, evaluation, log) if spec.setting.benchmark
                  else user_validation(spec, out_dir, evaluation))
    reported = reported_phase(spec, out_dir, cache_dir, log)
    rule = resolve_rule(spec.rule, metrics_row("", load_eval(out_dir / validation.info["target_eval"])),
                        f"{spec_path}: select")
    state = {"spec_path": str(spec_path), "spec": spec.raw, "resolved": {**asdict(spec), "rule": rule,
                                                                         "rule_as_written": spec.rule},
             "status": "running",
             "validation": validation.info, "reported": reported.info,
             "methods": previous.get("methods", {}), "invocations": previous.get("invocations", [])}
    invocation = {"setup_seconds": round(time.perf_counter() - start, 1)}
    state["invocations"].append(invocation)
    save = lambda: atomic_write_json(state_path, state)  # noqa: E731

    def cell(phase: Phase, method: Method, params: dict, seed: int, folder: Path) -> dict:
        return run_method_cell(spec, phase, method, params, seed, folder, out_dir)

    tuning_start = time.perf_counter()
    base_seed = (spec.setting.base.get("train") or {}).get("seed", 0)
    studies = {}
    for method in spec.methods:
        seed = spec.sampler_seed + int(params_key(method.name)[:7], 16)  # stable when the method list changes
        studies[method.name] = open_study(out_dir / STORAGE_FILE, method.name, seed, spec.trials)
        state["methods"].setdefault(method.name, {})["trials"] = trial_rows(studies[method.name])
    # Round robin: trial r of every method before trial r + 1 of any, so a run stopped at any point
    # has spent (within one trial) the same budget on each method.
    for budget in range(1, spec.trials + 1):
        for method in spec.methods:
            study, entry = studies[method.name], state["methods"][method.name]

            def refresh(study=study, entry=entry):
                entry["trials"] = trial_rows(study)
                save()

            space = spec.space_for(method)
            run_trials(study, budget, lambda trial, space=space: suggest_params(trial, space),
                       lambda params, method=method: cell(validation, method, params, base_seed,
                                                          out_dir / "trials" / method.name / params_key(params)),
                       rule, log=log, on_trial=refresh)
    invocation["tuning_seconds"] = round(time.perf_counter() - tuning_start, 1)

    finals_start = time.perf_counter()
    for method in spec.methods:
        entry = state["methods"][method.name]
        chosen, reason = select_trial(entry["trials"], rule)
        entry["chosen"] = chosen and {"number": chosen["number"], "params": chosen["params"], "reason": reason}
        entry["finals"] = []
        if chosen is None:
            log(f"{method.name}: {reason}; nothing to rerun")
            continue
        log(f"{method.name}: chose trial {chosen['number']} ({reason}); rerunning with seeds {spec.seeds}")
        folder = out_dir / "final" / method.name / params_key(chosen["params"])
        for seed in spec.seeds:
            entry["finals"].append({"seed": seed, **cell(reported, method, chosen["params"], seed, folder / f"seed{seed}")})
            save()
    invocation["final_seconds"] = round(time.perf_counter() - finals_start, 1)
    invocation["total_seconds"] = round(time.perf_counter() - start, 1)
    state["status"] = "finished"
    save()
    return state
