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
"""

from __future__ import annotations

import copy
import logging
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from . import __version__
from .config import UnlearnConfig
from .data.formatting import PromptFormat
from .data.unlearning import UnlearningCollator, UnlearningDataset
from .errors import UserInputError
from .influence import score_influence
from .io_utils import atomic_write_json, replace_dir
from .masked_optim import freeze_unselected, register_gradient_masks
from .masks import check_mask_matches, density_report, load_mask, plot_density, save_mask
from .noise import inject_noise
from .objectives import get_objective
from .reference import precompute_reference
from .selection import eligible_parameters, mask_fraction, select_top_fraction
from .trainer import UnlearningTrainer

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


def check_out_dir(out_dir: Path, overwrite: bool, resume: bool) -> None:
    """Refuse to clobber a finished run unless asked; nothing is written here."""
    if (out_dir / FINISHED).exists() and not overwrite:
        raise UserInputError(f"--out: {out_dir} already holds a finished run (pass --overwrite to replace it)")
    if overwrite and out_dir.exists() and not resume:
        shutil.rmtree(out_dir)


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
                             seed=config.train.seed, wagle_mu=sel.wagle_mu)
    start = time.perf_counter()
    masks = select_top_fraction(result.scores, sel.ratio)
    timing = {f"score_{k}": v for k, v in result.timing.items()}
    timing["select"] = time.perf_counter() - start
    return masks, timing


def training_args(out_dir: Path, config: UnlearnConfig):
    from transformers import TrainingArguments

    train = config.train
    return TrainingArguments(
        output_dir=str(out_dir / "checkpoints"), num_train_epochs=train.epochs, learning_rate=train.lr,
        per_device_train_batch_size=train.batch_size, gradient_accumulation_steps=train.gradient_accumulation_steps,
        weight_decay=train.weight_decay, warmup_steps=train.warmup_ratio, max_grad_norm=train.max_grad_norm,
        lr_scheduler_type="linear", seed=train.seed, data_seed=train.seed, report_to=[], logging_steps=1,
        save_strategy="steps" if train.save_steps else "no", save_steps=train.save_steps or 500,
        save_only_model=False, remove_unused_columns=False, dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=os.environ.get("GRIN_UNLEARN_QUIET", "0") == "1",
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
    )


def unlearn(model, tokenizer, forget: list[dict], retain: list[dict], config: UnlearnConfig,
            out_dir: str | Path, fmt: PromptFormat | None = None, mask_path: str | Path | None = None,
            resume: bool = False, overwrite: bool = False, log=print) -> UnlearnResult:
    """Run GRIN (or a baseline) on ``model`` in place and save the run under ``out_dir``."""
    out_dir = Path(out_dir)
    check_out_dir(out_dir, overwrite, resume)
    if not forget:
        raise UserInputError("forget set: it is empty (expected at least one record)")
    spec = get_objective(config.objective)
    if spec.uses_retain and not retain:
        raise UserInputError(f"retain set: it is empty, and objective '{config.objective}' needs one")
    fmt = fmt or PromptFormat(max_length=config.train.max_length)
    timing: dict[str, float] = {}
    start = time.perf_counter()

    masks, select_timing = build_masks(model, tokenizer, forget, retain, config, fmt, mask_path, log)
    timing.update(select_timing)
    dataset = UnlearningDataset(tokenizer, forget, retain, fmt, seed=config.train.seed)
    if dataset.truncated:
        logger.warning("%d examples were longer than %d tokens and were truncated", dataset.truncated, fmt.max_length)
    collator = UnlearningCollator(tokenizer.pad_token_id)
    needed = spec.required_inputs(config.hyperparams)
    ref_groups = tuple(g for g in ("forget", "refusal") if f"ref_{g}" in needed)
    reference = precompute_reference(model, dataset, collator, ref_groups) if ref_groups else None
    ref_model = copy.deepcopy(model).eval().requires_grad_(False) if "retain_kl" in needed else None

    all_params = dict(model.named_parameters())
    if masks is not None:
        params = {name: all_params[name] for name in masks}
        if config.noise.noise_var > 0:
            noise = inject_noise(params, masks, config.noise.noise_var, config.noise.noise_mode, config.train.seed)
            log(f"noise σ²={config.noise.noise_var} ({config.noise.noise_mode}) on {noise.get('perturbed', 'the')} selected weights")
        trainable = freeze_unselected(params, masks, all_params)
        hooks = register_gradient_masks(trainable, masks)
        masks_by_param = {trainable[name]: masks[name] for name in trainable}
        log(f"selected {mask_fraction(masks):.1%} of eligible weights; training {len(trainable)} tensors")
    else:
        hooks, masks_by_param = [], None
        model.requires_grad_(True)

    if config.train.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    trainer = UnlearningTrainer(model=model.train(), args=training_args(out_dir, config), train_dataset=dataset,
                                data_collator=collator, processing_class=tokenizer, objective=spec,
                                hyperparams=config.hyperparams, reference=reference, ref_model=ref_model,
                                masks=masks_by_param)
    checkpoint = resume and any((out_dir / "checkpoints").glob("checkpoint-*"))
    train_start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=True if checkpoint else None)
    timing["train"] = time.perf_counter() - train_start
    for handle in hooks:
        handle.remove()
    model.requires_grad_(True)
    timing["total"] = time.perf_counter() - start
    save_run(out_dir, model, tokenizer, config, masks, trainer.state.log_history, timing)
    return UnlearnResult(out_dir, masks, timing, result.training_loss)


def save_run(out_dir: Path, model, tokenizer, config: UnlearnConfig, masks, log_history, timing) -> None:
    """Write every artifact atomically; ``run.json`` last marks the run finished."""
    out_dir.mkdir(parents=True, exist_ok=True)
    resolved = {"config": config.to_dict(), "environment": environment()}
    atomic_write_json(out_dir / "config.json", resolved)
    staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=".model."))
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    replace_dir(staging, out_dir / "model")
    if masks is not None:
        save_mask(out_dir / "mask.safetensors", masks, metadata=resolved)
        report = density_report(masks)
        atomic_write_json(out_dir / "density.json", report)
        plot_density(report, out_dir / "density.png", title=f"{config.selection.scorer}, p={config.selection.ratio}")
    atomic_write_json(out_dir / "train_log.json", log_history)
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    atomic_write_json(out_dir / FINISHED, {"status": "finished", "timing": timing})
