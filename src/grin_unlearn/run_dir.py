"""A run folder: the names of its files, checkpoints, the "finished" test, and the atomic save.

A run folder holds ``config.json`` (the resolved config and library versions), ``model/``
(``save_pretrained``), ``mask.safetensors`` with ``density.json``/``density.png`` for masked runs,
``train_log.json``, then ``run.json`` written last: a folder is a *finished run* exactly when it has
``run.json``. An experiment cell is *done* when it also has ``eval.json``.

Reliability (``docs/reliability.md``): the folder is checked before any work and changed only after
every input is validated; ``--overwrite`` retires an old run by removing its ``run.json`` first and
replacing each artifact atomically at the end, so a crash never loses it silently nor leaves a
finished-looking mix. ``checkpoints/checkpoint-<step>`` folders make a killed run resumable;
``checkpoints/run_config.json``, written before the first step, records what the run was started with
(the resolved config, the data fingerprints, the prompt format, the mask file), and ``--resume``
refuses checkpoints whose record differs from the command's (:func:`check_resume_record`).
"""

from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path

import torch

from ._version import __version__
from .data.formatting import FORMAT_FILE
from .parallel.distributed import is_main_process, wait_for_everyone
from .errors import UserInputError
from .io_utils import atomic_write_json
from .masks import save_mask_with_report
from .models import save_model_folder
from .parallel.sharding import full_masks, full_state_dict, is_sharded_model

CONFIG_FILE = "config.json"
FINISHED_FILE = "run.json"
EVAL_FILE = "eval.json"
TRAIN_LOG_FILE = "train_log.json"
MODEL_DIR = "model"
MASK_FILE = "mask.safetensors"
DENSITY_FILES = ("density.json", "density.png")
NOISE_FILE = "noise.json"
CHECKPOINTS_DIR = "checkpoints"
RESUME_RECORD_FILE = "run_config.json"  # in CHECKPOINTS_DIR: what the checkpoints were made with


def is_finished(run_dir: str | Path) -> bool:
    """True when ``run_dir`` holds a finished run (its ``run.json`` was written last)."""
    return (Path(run_dir) / FINISHED_FILE).is_file()


def finished_timing(run_dir: str | Path) -> dict | None:
    """The ``timing`` (seconds per phase, ``total`` included) a finished run recorded; None if unfinished."""
    try:
        return json.loads((Path(run_dir) / FINISHED_FILE).read_text(encoding="utf-8")).get("timing") or {}
    except (OSError, ValueError, AttributeError):
        return None


def is_evaluated(run_dir: str | Path) -> bool:
    """True when ``run_dir`` is a finished run that has also been evaluated (``eval.json``)."""
    return is_finished(run_dir) and (Path(run_dir) / EVAL_FILE).is_file()


def environment() -> dict:
    """Library versions recorded in every run folder (for auditors reproducing a run)."""
    import accelerate
    import transformers

    return {"grin_unlearn": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "accelerate": accelerate.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "cuda": torch.version.cuda}


def noise_record(run_dir: str | Path) -> dict | None:
    """The ``noise.json`` of a masked run (noise summary and forget-gradient norms); None if absent."""
    try:
        return json.loads((Path(run_dir) / NOISE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


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
    if (out_dir / FINISHED_FILE).exists() and not overwrite:
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
        if overwrite and (out_dir / FINISHED_FILE).exists():
            (out_dir / FINISHED_FILE).unlink()
        if overwrite and not resume:
            shutil.rmtree(out_dir / CHECKPOINTS_DIR, ignore_errors=True)
    wait_for_everyone()


def checkpoint_dirs(out_dir: Path) -> list[Path]:
    """``out_dir/checkpoints/checkpoint-<step>`` folders, by ascending step."""
    found = []
    for path in (out_dir / CHECKPOINTS_DIR).glob("checkpoint-*"):
        step = path.name.rsplit("-", 1)[-1]
        if path.is_dir() and step.isdigit():
            found.append((int(step), path))
    return [path for _, path in sorted(found)]


def write_resume_record(out_dir: Path, record: dict) -> None:
    """Record what a run with checkpoints was started with (main process; before the first step)."""
    if is_main_process():
        atomic_write_json(out_dir / CHECKPOINTS_DIR / RESUME_RECORD_FILE, record)
    wait_for_everyone()


def check_resume_record(out_dir: Path, record: dict) -> None:
    """Refuse to resume checkpoints made with a different config, data, format or mask; writes nothing.

    ``record`` is what this command would run with (JSON-like). Nothing to check when ``out_dir`` holds
    no checkpoint. Checkpoints without a record (from a version that did not write one) are refused
    too: nothing says they match.
    """
    if not checkpoint_dirs(out_dir):
        return
    path = out_dir / CHECKPOINTS_DIR / RESUME_RECORD_FILE
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UserInputError(f"--resume: the checkpoints in {out_dir / CHECKPOINTS_DIR} have no readable record of "
                             f"the config they were made with ({RESUME_RECORD_FILE}); pass --overwrite to start "
                             "over") from None
    if isinstance(saved, dict) and "config" in saved:
        from .config import current_config_dict  # here: config imports much of the package

        saved["config"] = current_config_dict(saved["config"])  # an older record: new fields at their defaults
    differences = _differences(saved, json.loads(json.dumps(record, default=str)))
    if differences:
        shown = "; ".join(differences[:6]) + (f"; and {len(differences) - 6} more" if len(differences) > 6 else "")
        raise UserInputError(f"--resume: the checkpoints in {out_dir / CHECKPOINTS_DIR} were made with a different "
                             f"setup ({shown}); rerun with the settings they were made with, or pass --overwrite "
                             "to start over")


def _differences(saved, current, prefix: str = "") -> list[str]:
    """``"key: checkpoint X, this command Y"`` for every dotted key whose value differs."""
    if isinstance(saved, dict) and isinstance(current, dict):
        found = []
        for key in sorted(set(saved) | set(current), key=str):
            found += _differences(saved.get(key), current.get(key), f"{prefix}{key}.")
        return found
    return [] if saved == current else [f"{prefix[:-1]}: checkpoint {saved!r}, this command {current!r}"]


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


def stopped_message(err: Exception, out_dir: Path, completed_steps: int) -> str:
    """One message for a NaN/inf loss: what happened, at which step, and which checkpoint is good.

    The loss of step ``s`` is computed from the weights after ``s − 1`` updates, so a checkpoint saved
    at step ``c < completed_steps`` holds weights whose next loss was finite; the one at
    ``completed_steps`` (if any) produced the bad loss and is not called good.
    """
    good = last_complete_checkpoint(out_dir, before_step=completed_steps)
    where = (f"the last good checkpoint is {good}" if good is not None
             else "no good checkpoint was saved before it (set --save-steps to keep checkpoints)")
    return f"{err}; training stopped, the run is unfinished: {where}"


def save_run(out_dir: Path, model, tokenizer, config, masks, log_history, timing, noise: dict | None = None,
             auto: dict | None = None, fmt=None) -> None:
    """Write every artifact atomically; ``run.json`` last marks the run finished.

    ``noise`` (masked runs) becomes ``noise.json``: the noise summary and the forget-gradient norms over
    the selected weights before and after the noise (:func:`noise_record` reads it back).
    ``auto``: the evidence of automatic choices (``--ratio auto``, ``--noise-var auto``), written under
    ``"auto"`` in ``config.json`` beside the resolved ``config`` that holds the values chosen.
    ``fmt``: the prompt format trained with, recorded in ``model/`` so the model is evaluated in it.

    Distributed: only the main process writes (every process holds the same weights and mask after a
    DDP run); the others wait at a barrier, so the folder is complete when ``unlearn`` returns anywhere.
    FSDP2: every process first takes part in gathering the full weights and the full mask onto the
    main process's CPU (one tensor at a time), which saves them as one model folder and one mask file.
    """
    state_dict = full_state_dict(model) if is_sharded_model(model) else None
    if masks is not None:
        masks = full_masks(masks)
    if is_main_process():
        _write_run(out_dir, model, tokenizer, config, masks, log_history, timing, noise, state_dict, auto, fmt)
    wait_for_everyone()


def _write_run(out_dir: Path, model, tokenizer, config, masks, log_history, timing, noise, state_dict=None,
               auto=None, fmt=None) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    resolved = {"config": config.to_dict(), "environment": environment()}
    if auto:
        resolved["auto"] = auto
    atomic_write_json(out_dir / CONFIG_FILE, resolved)
    save_model_folder(model, tokenizer, out_dir / MODEL_DIR, state_dict=state_dict,
                      extra_json={FORMAT_FILE: fmt.to_dict()} if fmt is not None else None)
    if masks is not None:
        save_mask_with_report(out_dir / MASK_FILE, masks, metadata=resolved,
                              title=f"{config.selection.scorer}, p={config.selection.ratio}")
    else:  # an overwritten run's mask must not pass for this run's
        for name in (MASK_FILE, *DENSITY_FILES):
            (out_dir / name).unlink(missing_ok=True)
    if noise is not None:
        atomic_write_json(out_dir / NOISE_FILE, noise)
    else:
        (out_dir / NOISE_FILE).unlink(missing_ok=True)
    atomic_write_json(out_dir / TRAIN_LOG_FILE, log_history)
    shutil.rmtree(out_dir / CHECKPOINTS_DIR, ignore_errors=True)
    atomic_write_json(out_dir / FINISHED_FILE, {"status": "finished", "timing": timing})
