"""The GRIN pipeline: select → noise → masked unlearning → save (arXiv 2508.06467, Algorithm 1).

``unlearn(model, tokenizer, forget, retain, config, out_dir)``:

1. influence scores on the eligible weights (:func:`~grin_unlearn.scoring.score_influence`), unless
   ``scorer == "none"`` (plain full fine-tuning with the objective, the baseline) or a saved mask is
   given;
2. global top-p selection (:func:`~grin_unlearn.selection.top_fraction.select_top_fraction`) → ``mask.safetensors``;
3. noise ``θ_i ← θ_i + N(0, σ²)`` on selected weights (:func:`~grin_unlearn.noise.injection.inject_noise`); with
   ``noise.noise_probe`` the forget-set gradient over the selected weights is measured before and after
   it (``noise.json``: does the noise act by enlarging vanishing gradients? GRIN's third open question;
   two extra forget-gradient passes, so off by default);
4. masked unlearning with :class:`~grin_unlearn.training.trainer.UnlearningTrainer` (reference
   log-probs taken from the model as it was before the noise, i.e. the starting model);
5. the run folder (:mod:`grin_unlearn.run_dir`), ``run.json`` last.

``--resume`` first compares what the command would run with (:func:`resume_record`: the resolved
config, fingerprints of the forget and retain sets, the prompt format, the mask file) with the record
the checkpoints were made with, and refuses a mismatch before any work.

The run folder's checks, checkpoints and atomic save live in :mod:`grin_unlearn.run_dir`, the
process-group helpers in :mod:`grin_unlearn.parallel.distributed`, the ``TrainingArguments`` mapping in
:mod:`grin_unlearn.training.arguments`. A NaN/inf loss raises :class:`TrainingStoppedError` naming the
step and the last good checkpoint.

Distributed (``torchrun`` / ``accelerate launch``, DDP): the ``TrainingArguments`` are built first, which
initialises ``torch.distributed``, so the gradient passes of step 1 are sharded over the processes and
all-reduced (every process then holds the same scores and mask); noise is seeded per tensor name, so
it is the same on every process; the Trainer averages gradients, so every process applies the same
masked update. Only the main process writes the run folder; the others wait at a barrier.

FSDP2 (``accelerate launch --config_file configs/accelerate/fsdp2.yaml``, or ``torchrun`` with
``ACCELERATE_USE_FSDP=true FSDP_VERSION=2``): the model is wrapped with ``fully_shard`` right after the
process group exists (:func:`~grin_unlearn.parallel.sharding.shard_model`), so every step runs on row shards:
scoring accumulates each process's rows of ``G_f``/``G_r``, selection is the exact global top-p over the
shards, the masks and noise are sharded like the weights, masked training runs the compact loop of
:mod:`grin_unlearn.training.sharded`, and saving gathers the full weights and mask onto the main
process. Checkpoints and ``--resume`` are not supported under FSDP2. See ``docs/distributed.md``.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .noise.auto_noise import probe_noise_var
from .selection.auto_ratio import auto_ratio, auto_rule
from .config import AUTO, SelectionConfig, UnlearnConfig
from .data.formatting import PromptFormat
from .data.unlearning import UnlearningCollator, UnlearningDataset, check_objective_accepts
from .parallel.distributed import check_launch_mode, fsdp2_requested, is_main_process
from .errors import TrainingStoppedError, UserInputError
from .masks import check_mask_matches, load_mask
from .models import pad_token_id
from .noise.injection import inject_noise
from .run_dir import (CHECKPOINTS_DIR, check_out_dir, check_resume_record, last_complete_checkpoint, prepare_out_dir,
                      save_run, stopped_message, write_resume_record)
from .scoring import eligible_parameters, score_influence
from .scoring.gradients import selected_forget_gradient
from .selection.top_fraction import mask_fraction, select_top_fraction
from .parallel.sharding import is_sharded_model, shard_model, shard_of
from .training.activations import LIVE_REFERENCE_INPUTS, scope_parameters, scope_patterns, steering_setup
from .training.arguments import enable_gradient_checkpointing, quiet_log_lines, training_arguments
from .training.masked_optim import make_masked_optimizer
from .training.monitor import check_monitor_input, monitor_callbacks
from .training.objectives import get_objective
from .training.reference import precompute_reference
from .training.sharded import train_sharded
from .training.trainer import NonFiniteLossError, UnlearningTrainer

logger = logging.getLogger(__name__)


@dataclass
class UnlearnResult:
    out_dir: Path
    masks: dict[str, torch.Tensor] | None
    timing: dict[str, float]
    train_loss: float | None


def build_masks(model, tokenizer, forget, retain, selection: SelectionConfig, seed: int, fmt, mask_path=None,
                log=print, auto: dict | None = None, scope: list[str] | None = None):
    """Masks from a saved file, from the scorer, or None for full fine-tuning; plus timing.

    ``scope``: the regexes of the only weights the objective updates (RMU's layers,
    :func:`~grin_unlearn.training.activations.scope_patterns`): the scorer selects among them, and
    without a scorer every one of them is selected.

    ``seed`` seeds the ``random`` scorer and the retain subsample of ``selection.retain_samples``.
    On a model wrapped by ``fully_shard`` the masks are sharded like its weights.
    ``selection.ratio == "auto"`` takes p from the scores (:func:`auto_ratio`); its evidence is stored
    in ``auto["ratio"]`` when ``auto`` is a dict.
    """
    sel = selection
    params = scope_parameters(model, scope) if scope else eligible_parameters(model, sel.include or None,
                                                                              sel.exclude or None)
    if mask_path is not None:
        masks, _ = load_mask(mask_path)
        check_mask_matches(masks, params)
        return {name: shard_of(mask, params[name]) for name, mask in masks.items()}, {}
    if not sel.masked:
        return ({name: torch.ones_like(p, dtype=torch.bool) for name, p in params.items()} if scope else None), {}
    rule = auto_rule(sel) if sel.ratio == AUTO else None
    log(f"scoring {sum(p.numel() for p in params.values()):,} weights with '{sel.scorer}'")
    result = score_influence(model, tokenizer, forget, retain, scorer=sel.scorer, fmt=fmt,
                             include=sel.include or None, exclude=sel.exclude or None, eps=sel.eps,
                             retain_samples=sel.retain_samples, batch_size=sel.score_batch_size,
                             seed=seed, wagle_mu=sel.wagle_mu,
                             accumulator_device=sel.accumulator_device, params=params,
                             retain_squares=rule == "balance")
    start = time.perf_counter()
    ratio = sel.ratio
    if ratio == AUTO:
        ratio, evidence = auto_ratio(result, sel, seed, log)
        if auto is not None:
            auto["ratio"] = {"requested": AUTO, **evidence}
    masks = select_top_fraction(result.scores, ratio)
    timing = {f"score_{k}": v for k, v in result.timing.items()}
    timing["select"] = time.perf_counter() - start
    return masks, timing


def unlearning_arguments(out_dir: Path, config: UnlearnConfig):
    """Unlearning's ``TrainingArguments``: linear schedule, a log line per step, optional checkpoints."""
    train = config.train
    return training_arguments(
        str(out_dir / CHECKPOINTS_DIR), epochs=train.epochs, learning_rate=train.lr, batch_size=train.batch_size,
        warmup_ratio=train.warmup_ratio, weight_decay=train.weight_decay, seed=train.seed, scheduler="linear",
        gradient_accumulation_steps=train.gradient_accumulation_steps, max_grad_norm=train.max_grad_norm,
        logging_steps=1, save_strategy="steps" if train.save_steps else "no", save_steps=train.save_steps or 500,
        save_only_model=False, bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def resume_record(config: UnlearnConfig, forget: list[dict], retain: list[dict], fmt: PromptFormat,
                  mask_path: str | Path | None = None) -> dict:
    """What a run is started with, as recorded next to its checkpoints and compared on ``--resume``.

    The resolved config, a SHA-256 of the forget and retain records (canonical JSON), the prompt
    format as given (before capping to the model's context) and the mask file, if any.
    """
    def fingerprint(records: list[dict]) -> str:
        blob = json.dumps(records, sort_keys=True, ensure_ascii=False, default=str).encode()
        return hashlib.sha256(blob).hexdigest()

    return {"config": config.to_dict(), "data": {"forget": fingerprint(forget), "retain": fingerprint(retain)},
            "format": dataclasses.asdict(fmt), "mask": str(mask_path) if mask_path is not None else None}


def forget_gradient_stats(model, tokenizer, forget: list[dict], fmt: PromptFormat, params: dict, masks: dict,
                          selection: SelectionConfig, timing: dict[str, float] | None = None) -> dict:
    """The noise probe (``noise.noise_probe``): :func:`~grin_unlearn.scoring.gradients.selected_forget_gradient`
    over the selected weights, in batches of ``selection.score_batch_size``; its seconds add to
    ``timing["noise_probe"]``."""
    start = time.perf_counter()
    stats = selected_forget_gradient(model, tokenizer, forget, fmt, params, masks, selection.score_batch_size,
                                     selection.accumulator_device)
    if timing is not None:
        timing["noise_probe"] = timing.get("noise_probe", 0.0) + time.perf_counter() - start
    return stats


@dataclass
class _Setting:  # what unlearn() checked and prepared before its timed part
    args: object  # TrainingArguments
    spec: object  # ObjectiveSpec
    needed: tuple
    ref_model: object
    fmt: PromptFormat
    record: dict
    log: object


def unlearn(model, tokenizer, forget: list[dict], retain: list[dict], config: UnlearnConfig,
            out_dir: str | Path, fmt: PromptFormat | None = None, mask_path: str | Path | None = None,
            resume: bool = False, overwrite: bool = False, log=print) -> UnlearnResult:
    """Run GRIN (or a baseline) on ``model`` in place and save the run under ``out_dir``:
    select (step 1–2) → noise (step 3) → train (step 4) → save."""
    out_dir = Path(out_dir)
    setting = _check_and_place(model, forget, retain, config, out_dir, fmt, mask_path, resume, overwrite, log)
    args, spec, fmt, log = setting.args, setting.spec, setting.fmt, setting.log
    timing: dict[str, float] = {}
    start = time.perf_counter()
    dataset = UnlearningDataset(tokenizer, forget, retain, fmt, seed=config.train.seed)
    if dataset.truncated:
        total = len(dataset.forget) + len(dataset.refusal) + len(dataset.retain)
        logger.warning("%d of %d training examples (forget, refusal and retain) were longer than %d tokens "
                       "and were truncated", dataset.truncated, total, fmt.max_length)
    auto: dict = {}  # evidence of automatic choices (--ratio auto, --noise-var auto) -> config.json
    scope = scope_patterns(model, config.hyperparams.rmu_layer, config.hyperparams.rmu_params) if spec.steers else None
    masks, select_timing = build_masks(model, tokenizer, forget, retain, config.selection, config.train.seed,
                                      fmt, mask_path, log, auto, scope)
    timing.update(select_timing)
    if scope and not config.selection.masked and mask_path is None:  # RMU's own weights, no scorer: no noise
        config = dataclasses.replace(config, noise=dataclasses.replace(config.noise, noise_var=0.0))
    if "ratio" in auto:  # the run records the p it used; the request and evidence go under "auto"
        config = dataclasses.replace(config, selection=dataclasses.replace(config.selection,
                                                                           ratio=auto["ratio"]["ratio"]))
    # Every input is valid from here on: only now may an old run in out_dir be retired.
    prepare_out_dir(out_dir, overwrite, resume)
    if config.train.save_steps and not (resume and last_complete_checkpoint(out_dir) is not None):
        write_resume_record(out_dir, setting.record)
    collator = UnlearningCollator(pad_token_id(tokenizer))
    # From the starting model, before noise and before any checkpoint is loaded (also on --resume).
    ref_groups = tuple(g for g in ("forget", "refusal") if f"ref_{g}" in setting.needed)
    reference = precompute_reference(model, dataset, collator, ref_groups) if ref_groups else None
    ref_model = setting.ref_model
    if set(LIVE_REFERENCE_INPUTS) & set(setting.needed) and ref_model is None:
        ref_model = copy.deepcopy(model).eval().requires_grad_(False)
    config, optimizer, noise_report = _noise_and_optimizer(model, tokenizer, forget, retain, masks, config, fmt,
                                                           args, auto, timing, log)
    if config.train.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    trainer = UnlearningTrainer(model=model.train(), args=args, train_dataset=dataset,
                                data_collator=collator, pad_id=pad_token_id(tokenizer), objective=spec,
                                hyperparams=config.hyperparams, reference=reference, ref_model=ref_model,
                                optimizers=(optimizer, None),
                                **steering_setup(model, ref_model, config.hyperparams, setting.needed, config.train.seed),
                                callbacks=monitor_callbacks(model, tokenizer, forget, retain, fmt, config.monitor, out_dir))
    train_loss, timing["train"] = _train(model, trainer, optimizer, out_dir, resume, log)
    timing["total"] = time.perf_counter() - start
    save_run(out_dir, model, tokenizer, config, masks, trainer.state.log_history, timing, noise_report,
             auto=auto or None, fmt=fmt)
    return UnlearnResult(out_dir, masks, timing, train_loss)


def _check_and_place(model, forget, retain, config: UnlearnConfig, out_dir: Path, fmt, mask_path, resume: bool,
                     overwrite: bool, log) -> _Setting:
    """Every check that needs no scoring, the process group and the model's device (or FSDP2 shards)."""
    check_launch_mode(masked=mask_path is not None or config.selection.masked)
    sharded = fsdp2_requested()
    if sharded and (resume or config.train.save_steps):
        raise UserInputError("--resume / --save-steps: checkpoints are not supported under FSDP2 yet "
                             "(run without them, or under DDP)")
    # First: under torchrun / accelerate launch this initialises torch.distributed, so scoring is sharded.
    args = unlearning_arguments(out_dir, config)
    check_out_dir(out_dir, overwrite, resume)
    if not forget:
        raise UserInputError("forget set: it is empty (expected at least one record)")
    spec = get_objective(config.objective)
    needed = spec.required_inputs(config.hyperparams)
    ref_model = None
    if args.world_size > 1:
        if sharded:  # the reference copy (retain KL) is taken whole, then sharded like the model
            ref_model = copy.deepcopy(model) if set(LIVE_REFERENCE_INPUTS) & set(needed) else None
            shard_model(model, args.device)
            ref_model = shard_model(ref_model, args.device).eval().requires_grad_(False) if ref_model else None
        elif getattr(model, "hf_device_map", None) is None:
            model.to(args.device)  # this process's device (load_model put every process on cuda:0)
        if not is_main_process():
            log = _silent
    check_objective_accepts(forget, config.objective, spec.needs_refusal)
    check_monitor_input(config.monitor, forget, retain, args.world_size)
    if spec.uses_retain and not retain:
        raise UserInputError(f"retain set: it is empty, and objective '{config.objective}' needs one")
    fmt = fmt or PromptFormat(max_length=config.train.max_length)
    record = resume_record(config, forget, retain, fmt, mask_path)
    if resume:
        check_resume_record(out_dir, record)
    return _Setting(args, spec, needed, ref_model, fmt.fit_to_context(model, log), record, log)


def _noise_and_optimizer(model, tokenizer, forget, retain, masks, config: UnlearnConfig, fmt, args, auto: dict,
                         timing: dict, log):
    """Step 3 and the optimizer: ``(config, optimizer, noise report)``.

    With a mask: σ² resolved (``auto``), the noise injected on the selected weights (measured by the
    noise probe when asked), and a :class:`MaskedAdamW` over them. Without one: every weight trains
    under the Trainer's own AdamW and no noise is added.
    """
    all_params = dict(model.named_parameters())
    if masks is None:
        model.requires_grad_(True)
        if config.noise.noise_var == AUTO:
            config = dataclasses.replace(config, noise=dataclasses.replace(config.noise, noise_var=0.0))
            auto["noise_var"] = {"requested": AUTO, "noise_var": 0.0, "reason": "no mask: no noise"}
        if config.noise.noise_var > 0:
            log("scorer 'none' selects no weights, so no noise is added (full fine-tuning)")
        return config, None, None
    params = {name: all_params[name] for name in masks}
    if config.noise.noise_var == AUTO:
        config = _resolve_noise_var(model, tokenizer, retain, params, masks, config, fmt, auto, log)
    noise = {"variance": 0.0, "perturbed": 0}
    before = forget_gradient_stats(model, tokenizer, forget, fmt, params, masks, config.selection, timing) \
        if config.noise.noise_probe else None
    if config.noise.noise_var > 0:
        noise = inject_noise(params, masks, config.noise.noise_var, config.noise.noise_mode, config.train.seed)
        log(f"noise σ²={config.noise.noise_var} ({config.noise.noise_mode}) on {noise.get('perturbed', 'the')} selected weights")
    noise_report = {"noise": noise}
    if before is not None:
        after = forget_gradient_stats(model, tokenizer, forget, fmt, params, masks, config.selection, timing) \
            if config.noise.noise_var > 0 else before  # no noise: the gradient is the same
        noise_report["forget_gradient"] = {
            "before_noise": before, "after_noise": after,
            "l2_ratio": after["l2"] / before["l2"] if before["l2"] > 0 else None,
            "definition": "G_f = sum over forget batches of the gradient of the mean answer-token NLL "
                          f"(batches of {config.selection.score_batch_size}), over the selected weights only"}
        log(f"forget-gradient L2 over the selected weights: {before['l2']:.4g} before the noise, "
            f"{after['l2']:.4g} after")
    optimizer = make_masked_optimizer(model, masks, lr=args.learning_rate, weight_decay=args.weight_decay,
                                      betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon)
    trained = sum(p.requires_grad for p in all_params.values())
    log(f"selected {mask_fraction(masks):.1%} of eligible weights; training {trained} tensors")
    return config, optimizer, noise_report


def _train(model, trainer, optimizer, out_dir: Path, resume: bool, log) -> tuple[float, float]:
    """Step 4: ``(training loss, seconds)``; a non-finite loss stops the run with the steps it reached."""
    quiet_log_lines(trainer)
    checkpoint = last_complete_checkpoint(out_dir) if resume else None
    if checkpoint is not None:
        log(f"resuming from {checkpoint}")
    train_start = time.perf_counter()
    try:
        if is_sharded_model(model):
            train_loss = train_sharded(trainer)
        else:
            train_loss = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None).training_loss
    except NonFiniteLossError as err:
        raise TrainingStoppedError(stopped_message(err, out_dir, trainer.state.global_step)) from None
    finally:
        if optimizer is not None:
            optimizer.remove_gradient_masks()
        model.requires_grad_(True)
    return train_loss, time.perf_counter() - train_start


def _resolve_noise_var(model, tokenizer, retain, params, masks, config: UnlearnConfig, fmt, auto: dict,
                       log) -> UnlearnConfig:
    """``--noise-var auto``: σ² from :func:`~grin_unlearn.noise.auto_noise.probe_noise_var`, recorded in ``auto``."""
    probe = probe_noise_var(model, tokenizer, retain, params, masks, config.noise.noise_mode, config.train.seed, fmt)
    log(f"noise-var auto: σ² = {probe.noise_var:.3g} ({config.noise.noise_mode}; retain NLL "
        f"{probe.base_loss:.3f} + at most {probe.tolerance:.3f}; {probe.reason})")
    auto["noise_var"] = {"requested": AUTO, **probe.evidence()}
    return dataclasses.replace(config, noise=dataclasses.replace(config.noise, noise_var=probe.noise_var))


def _silent(*_args, **_kwargs) -> None:
    pass
