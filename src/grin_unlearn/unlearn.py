"""The GRIN pipeline: select → noise → masked unlearning → save (arXiv 2508.06467, Algorithm 1).

``unlearn(model, tokenizer, forget, retain, config, out_dir)``:

1. influence scores on the eligible weights (:func:`score_influence`), unless ``scorer == "none"``
   (plain full fine-tuning with the objective, the baseline) or a saved mask is given;
2. global top-p selection (:func:`select_top_fraction`) → ``mask.safetensors``;
3. noise ``θ_i ← θ_i + N(0, σ²)`` on selected weights (:func:`inject_noise`);
4. masked unlearning with :class:`UnlearningTrainer` (reference log-probs taken from the model as it
   was before the noise, i.e. the starting model);
5. ``model/`` (save_pretrained), ``config.json``, ``train_log.json``, ``density.json``/``density.png``,
   and ``run.json`` last, which marks the run finished.

Reliability (``docs/reliability.md``): the output folder is checked before any work and changed only
after every input is validated; ``--overwrite`` retires an old run by removing its ``run.json`` first
and replacing each artifact atomically at the end, so a crash never loses it silently nor leaves a
finished-looking mix. ``save_steps`` checkpoints make a killed run resumable (``resume=True`` picks the
newest *complete* checkpoint) and the resumed run ends bit-identical to an uninterrupted one on CPU. A
NaN/inf loss raises :class:`TrainingStoppedError` naming the step and the last good checkpoint.

Distributed (``torchrun`` / ``accelerate launch``, DDP): the ``TrainingArguments`` are built first, which
initialises ``torch.distributed``, so the gradient passes of step 1 are sharded over the processes and
all-reduced (every process then holds the same scores and mask); noise is seeded per tensor name, so
it is the same on every process; the Trainer averages gradients, so every process applies the same
masked update. Only the main process writes the run folder; the others wait at a barrier.
See ``docs/distributed.md``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from . import __version__
from .config import UnlearnConfig
from .data.formatting import PromptFormat
from .data.unlearning import UnlearningCollator, UnlearningDataset, check_objective_accepts
from .errors import TrainingStoppedError, UserInputError
from .influence import score_influence
from .io_utils import atomic_write_json, replace_dir
from .masked_optim import make_masked_optimizer
from .masks import check_mask_matches, density_report, load_mask, plot_density, save_mask
from .noise import inject_noise
from .objectives import get_objective
from .reference import precompute_reference
from .selection import eligible_parameters, mask_fraction, select_top_fraction
from .trainer import NonFiniteLossError, UnlearningTrainer

logger = logging.getLogger(__name__)
FINISHED = "run.json"


@dataclass
class UnlearnResult:
    out_dir: Path
    masks: dict[str, torch.Tensor] | None
    timing: dict[str, float]
    train_loss: float | None


def environment() -> dict:
    """Library versions recorded in every run folder (for auditors reproducing a run)."""
    import accelerate
    import transformers

    return {"grin_unlearn": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "accelerate": accelerate.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "cuda": torch.version.cuda}


def is_main_process() -> bool:
    """True outside ``torch.distributed`` and on global rank 0 inside it (the process that writes files)."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def wait_for_everyone() -> None:
    """A barrier over all processes when ``torch.distributed`` is initialised; a no-op otherwise."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def check_launch_mode(masked: bool) -> None:
    """Refuse, before any scoring, the ``accelerate launch`` modes this pipeline cannot run correctly.

    :class:`MaskedAdamW` indexes each whole parameter with its full-shape mask, but FSDP and DeepSpeed
    hand the optimizer flat shards (FSDP's flat parameters, ZeRO's fp32 partitions), so masked runs
    need DDP. Under FSDP and ZeRO-3 every process holds only a shard of each weight, so
    ``model.save_pretrained`` in :func:`save_run` would not see whole weights either, masked or not.
    """
    env = os.environ
    fsdp = env.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    deepspeed = env.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    zero3 = deepspeed and env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3"
    mode = "FSDP" if fsdp else "DeepSpeed ZeRO-3" if zero3 else "DeepSpeed" if deepspeed else None
    if mode is not None and (masked or fsdp or zero3):
        raise UserInputError(
            f"accelerate launch: {mode} is not supported by `unlearn` yet"
            + (" for masked runs (the mask indexes whole parameters; this mode gives the optimizer flat shards)"
               if masked else " (saving needs whole weights on the main process)")
            + "; launch with configs/accelerate/ddp.yaml instead (see docs/distributed.md)")


def check_out_dir(out_dir: Path, overwrite: bool, resume: bool) -> None:
    """Refuse an ``out_dir`` that would be clobbered or silently mixed; writes nothing.

    * a finished run (``run.json``) is refused unless ``overwrite``;
    * checkpoints of an unfinished run are refused unless ``resume`` (continue it) or ``overwrite``
      (start over), so a forgotten ``--resume`` cannot mix a fresh run with stale checkpoints;
    * ``out_dir`` must be a folder if it exists.

    Every process runs the check (so all raise together). :func:`prepare_out_dir` does the removals,
    later, once every input has been validated.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise UserInputError(f"--out: {out_dir} exists and is not a folder (expected a run folder)")
    if (out_dir / FINISHED).exists() and not overwrite:
        raise UserInputError(f"--out: {out_dir} already holds a finished run (pass --overwrite to replace it)")
    if checkpoint_dirs(out_dir) and not (resume or overwrite):
        raise UserInputError(f"--out: {out_dir} holds checkpoints of an unfinished run "
                             "(pass --resume to continue it, or --overwrite to start over)")


def prepare_out_dir(out_dir: Path, overwrite: bool, resume: bool) -> None:
    """Make ``out_dir`` ready for a new run without losing a finished one before the new one succeeds.

    ``--overwrite`` of a finished run first removes ``run.json`` (so a crash from here on leaves an
    *unfinished* run, never a finished-looking mix) and the old checkpoints (so a later ``--resume``
    cannot pick them up); the old ``model/``, mask and logs stay until :func:`save_run` replaces each
    one atomically. Nothing else in ``out_dir`` is touched (the old code removed the whole folder,
    which lost the old run on a crash and was dangerous for a mistyped ``--out``).
    """
    if is_main_process():
        if overwrite and (out_dir / FINISHED).exists():
            (out_dir / FINISHED).unlink()
        if overwrite and not resume:
            shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    wait_for_everyone()


def checkpoint_dirs(out_dir: Path) -> list[Path]:
    """``out_dir/checkpoints/checkpoint-<step>`` folders, by ascending step."""
    found = []
    for path in (out_dir / "checkpoints").glob("checkpoint-*"):
        step = path.name.rsplit("-", 1)[-1]
        if path.is_dir() and step.isdigit():
            found.append((int(step), path))
    return [path for _, path in sorted(found)]


def last_complete_checkpoint(out_dir: Path, before_step: int | None = None) -> Path | None:
    """The newest checkpoint that was written to the end (its ``trainer_state.json`` parses).

    ``Trainer`` writes a checkpoint in place (weights, optimizer, scheduler, RNG, then
    ``trainer_state.json`` last), so a run killed while saving leaves a partial folder: it is skipped.
    """
    for path in reversed(checkpoint_dirs(out_dir)):
        if before_step is not None and int(path.name.rsplit("-", 1)[-1]) >= before_step:
            continue
        try:
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        return path
    return None


def build_masks(model, tokenizer, forget, retain, config: UnlearnConfig, fmt, mask_path=None, log=print):
    """Masks from a saved file, from the scorer, or None for full fine-tuning; plus timing."""
    sel = config.selection
    params = eligible_parameters(model, sel.include or None, sel.exclude or None)
    if mask_path is not None:
        masks, _ = load_mask(mask_path)
        check_mask_matches(masks, params)
        return masks, {}
    if sel.scorer == "none":
        return None, {}
    log(f"scoring {sum(p.numel() for p in params.values()):,} weights with '{sel.scorer}'")
    result = score_influence(model, tokenizer, forget, retain, scorer=sel.scorer, fmt=fmt,
                             include=sel.include or None, exclude=sel.exclude or None, eps=sel.eps,
                             retain_samples=sel.retain_samples, batch_size=sel.score_batch_size,
                             seed=config.train.seed, wagle_mu=sel.wagle_mu,
                             accumulator_device=sel.accumulator_device)
    start = time.perf_counter()
    masks = select_top_fraction(result.scores, sel.ratio)
    timing = {f"score_{k}": v for k, v in result.timing.items()}
    timing["select"] = time.perf_counter() - start
    return masks, timing


def training_args(out_dir: Path, config: UnlearnConfig):
    from transformers import TrainingArguments

    train = config.train
    # accelerate would pick gloo for a multi-process CPU run anyway; naming it keeps the choice explicit.
    cpu_distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    return TrainingArguments(
        output_dir=str(out_dir / "checkpoints"), num_train_epochs=train.epochs, learning_rate=train.lr,
        per_device_train_batch_size=train.batch_size, gradient_accumulation_steps=train.gradient_accumulation_steps,
        weight_decay=train.weight_decay, warmup_steps=train.warmup_ratio, max_grad_norm=train.max_grad_norm,
        lr_scheduler_type="linear", seed=train.seed, data_seed=train.seed, report_to=[], logging_steps=1,
        save_strategy="steps" if train.save_steps else "no", save_steps=train.save_steps or 500,
        save_only_model=False, remove_unused_columns=False, dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(), ddp_backend="gloo" if cpu_distributed else None,
        disable_tqdm=os.environ.get("GRIN_UNLEARN_QUIET", "0") == "1",
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
    )


def unlearn(model, tokenizer, forget: list[dict], retain: list[dict], config: UnlearnConfig,
            out_dir: str | Path, fmt: PromptFormat | None = None, mask_path: str | Path | None = None,
            resume: bool = False, overwrite: bool = False, log=print) -> UnlearnResult:
    """Run GRIN (or a baseline) on ``model`` in place and save the run under ``out_dir``."""
    out_dir = Path(out_dir)
    check_launch_mode(masked=mask_path is not None or config.selection.scorer != "none")
    # First: under torchrun / accelerate launch this initialises torch.distributed, so scoring is sharded.
    args = training_args(out_dir, config)
    if args.world_size > 1:
        if getattr(model, "hf_device_map", None) is None:
            model.to(args.device)  # this process's device (load_model put every process on cuda:0)
        if not is_main_process():
            log = _silent
    check_out_dir(out_dir, overwrite, resume)
    if not forget:
        raise UserInputError("forget set: it is empty (expected at least one record)")
    spec = get_objective(config.objective)
    check_objective_accepts(forget, config.objective, spec.needs_refusal)
    if spec.uses_retain and not retain:
        raise UserInputError(f"retain set: it is empty, and objective '{config.objective}' needs one")
    fmt = _fit_to_context(fmt or PromptFormat(max_length=config.train.max_length), model, log)
    timing: dict[str, float] = {}
    start = time.perf_counter()

    dataset = UnlearningDataset(tokenizer, forget, retain, fmt, seed=config.train.seed)
    if dataset.truncated:
        total = len(dataset.forget) + len(dataset.refusal) + len(dataset.retain)
        logger.warning("%d of %d training examples (forget, refusal and retain) were longer than %d tokens "
                       "and were truncated", dataset.truncated, total, fmt.max_length)
    masks, select_timing = build_masks(model, tokenizer, forget, retain, config, fmt, mask_path, log)
    timing.update(select_timing)
    # Every input is valid from here on: only now may an old run in out_dir be retired.
    prepare_out_dir(out_dir, overwrite, resume)
    collator = UnlearningCollator(tokenizer.pad_token_id)
    needed = spec.required_inputs(config.hyperparams)
    # From the starting model, before noise and before any checkpoint is loaded (also on --resume).
    ref_groups = tuple(g for g in ("forget", "refusal") if f"ref_{g}" in needed)
    reference = precompute_reference(model, dataset, collator, ref_groups) if ref_groups else None
    ref_model = copy.deepcopy(model).eval().requires_grad_(False) if "retain_kl" in needed else None

    all_params = dict(model.named_parameters())
    if masks is not None:
        params = {name: all_params[name] for name in masks}
        if config.noise.noise_var > 0:
            noise = inject_noise(params, masks, config.noise.noise_var, config.noise.noise_mode, config.train.seed)
            log(f"noise σ²={config.noise.noise_var} ({config.noise.noise_mode}) on {noise.get('perturbed', 'the')} selected weights")
        optimizer = make_masked_optimizer(model, masks, lr=args.learning_rate, weight_decay=args.weight_decay,
                                          betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon)
        trained = sum(p.requires_grad for p in all_params.values())
        log(f"selected {mask_fraction(masks):.1%} of eligible weights; training {trained} tensors")
    else:
        optimizer = None
        model.requires_grad_(True)
        if config.noise.noise_var > 0:
            log("scorer 'none' selects no weights, so no noise is added (full fine-tuning)")

    if config.train.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    trainer = UnlearningTrainer(model=model.train(), args=args, train_dataset=dataset,
                                data_collator=collator, processing_class=tokenizer, objective=spec,
                                hyperparams=config.hyperparams, reference=reference, ref_model=ref_model,
                                optimizers=(optimizer, None))
    checkpoint = last_complete_checkpoint(out_dir) if resume else None
    if checkpoint is not None:
        log(f"resuming from {checkpoint}")
    train_start = time.perf_counter()
    try:
        result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except NonFiniteLossError as err:
        raise TrainingStoppedError(_stopped_message(err, out_dir, trainer.state.global_step)) from None
    finally:
        if optimizer is not None:
            optimizer.remove_gradient_masks()
        model.requires_grad_(True)
    timing["train"] = time.perf_counter() - train_start
    timing["total"] = time.perf_counter() - start
    save_run(out_dir, model, tokenizer, config, masks, trainer.state.log_history, timing)
    return UnlearnResult(out_dir, masks, timing, result.training_loss)


def _silent(*_args, **_kwargs) -> None:
    pass


def _fit_to_context(fmt: PromptFormat, model, log) -> PromptFormat:
    """Cap ``fmt.max_length`` at the model's context window (longer inputs are truncated, not fed)."""
    context = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if isinstance(context, int) and 0 < context < fmt.max_length:
        log(f"max_length {fmt.max_length} exceeds the model's context of {context} tokens; using {context}")
        return dataclasses.replace(fmt, max_length=context)
    return fmt


def _stopped_message(err: Exception, out_dir: Path, completed_steps: int) -> str:
    """One message for a NaN/inf loss: what happened, at which step, and which checkpoint is good.

    The loss of step ``s`` is computed from the weights after ``s − 1`` updates, so a checkpoint saved
    at step ``c < completed_steps`` holds weights whose next loss was finite; the one at
    ``completed_steps`` (if any) produced the bad loss and is not called good.
    """
    good = last_complete_checkpoint(out_dir, before_step=completed_steps)
    where = (f"the last good checkpoint is {good}" if good is not None
             else "no good checkpoint was saved before it (set --save-steps to keep checkpoints)")
    return f"{err}; training stopped, the run is unfinished: {where}"


def save_run(out_dir: Path, model, tokenizer, config: UnlearnConfig, masks, log_history, timing) -> None:
    """Write every artifact atomically; ``run.json`` last marks the run finished.

    Distributed: only the main process writes (every process holds the same weights and mask after a
    DDP run); the others wait at a barrier, so the folder is complete when ``unlearn`` returns anywhere.
    """
    if is_main_process():
        _write_run(out_dir, model, tokenizer, config, masks, log_history, timing)
    wait_for_everyone()


def _write_run(out_dir: Path, model, tokenizer, config: UnlearnConfig, masks, log_history, timing) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    resolved = {"config": config.to_dict(), "environment": environment()}
    atomic_write_json(out_dir / "config.json", resolved)
    staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=".model."))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        replace_dir(staging, out_dir / "model")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if masks is not None:
        save_mask(out_dir / "mask.safetensors", masks, metadata=resolved)
        report = density_report(masks)
        atomic_write_json(out_dir / "density.json", report)
        plot_density(report, out_dir / "density.png", title=f"{config.selection.scorer}, p={config.selection.ratio}")
    else:  # an overwritten run's mask must not pass for this run's
        for name in ("mask.safetensors", "density.json", "density.png"):
            (out_dir / name).unlink(missing_ok=True)
    atomic_write_json(out_dir / "train_log.json", log_history)
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    atomic_write_json(out_dir / FINISHED, {"status": "finished", "timing": timing})
