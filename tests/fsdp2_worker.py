"""GRIN under FSDP2 on CPU (gloo): the worker script driven by ``tests/test_fsdp2.py``.

Not a test module (no ``test_`` prefix). Launched once, with the repository's FSDP2 config::

    accelerate launch --config_file configs/accelerate/fsdp2.yaml --num_processes 2 --mixed_precision no \\
        tests/fsdp2_worker.py OUT MODEL_DIR WORLD_DIR

Every process builds the same micro world, tokenizer and model as ``tests/distributed_worker.py``; then

1. selection alone: :func:`selection_cases` scores (heavy ties, uneven and empty shards, negative
   scores) sharded by rows, through ``select_top_fraction``; and one case with a NaN in rank 1's shard;
2. the model is wrapped with ``fully_shard``; GRIN scoring at ``EXACT_BATCH`` (one round: the forget
   pass's single batch on rank 0 while rank 1 runs a zero-weighted batch, the retain pass one batch per
   rank) and at ``SMALL_BATCH`` (several rounds);
3. the whole ``unlearn()`` pipeline (selection, noise, masked NPO with weight decay and clipping) into
   ``OUT/run``; then :func:`kl_config` (GradDiff with the KL retain term, i.e. a sharded reference
   model, 2 micro-batches per step) from that run's saved mask into ``OUT/run_kl``;
4. ``grin-unlearn select`` on ``MODEL_DIR`` / ``WORLD_DIR`` into ``OUT/select``.

Rank 0 writes ``OUT/fsdp2.safetensors`` (full tensors, gathered; keys ``<what>/<name>``)::

    case<i>/<name>  masks of selection case i      gf/*, gr/*, scores/*  at EXACT_BATCH
    gf_small/*, gr_small/*  at SMALL_BATCH           mask/*  the mask unlearn() selected
    noised/*  eligible weights right after the noise    final/*  every weight after unlearning
    final_kl/*  every weight after the KL run

and every rank writes ``OUT/rank<N>.json`` (world size, local shard sizes, NaN messages, train loss).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for `tests.*`

from safetensors.torch import save_file  # noqa: E402

from grin_unlearn.selection.auto_knee import knee_ratio  # noqa: E402
from grin_unlearn.selection.auto_ratio import balance_ratio  # noqa: E402
from grin_unlearn.cli import main as cli_main  # noqa: E402
from grin_unlearn.config import NoiseConfig, UnlearnConfig  # noqa: E402
from grin_unlearn.training.objectives import ObjectiveHyperparams  # noqa: E402
from grin_unlearn.parallel.distributed import init_from_launcher  # noqa: E402
from grin_unlearn.errors import UserInputError  # noqa: E402
from grin_unlearn.run_dir import is_finished  # noqa: E402
from grin_unlearn.scoring import score_influence  # noqa: E402
from grin_unlearn.selection.top_fraction import select_top_fraction  # noqa: E402
from grin_unlearn.models import build_tiny_model  # noqa: E402
from grin_unlearn.parallel.sharding import full_state_dict, local, shard_model  # noqa: E402
from tests.conftest import MICRO_MODEL  # noqa: E402
from tests.distributed_worker import EXACT_BATCH, RETAIN, SEED, SMALL_BATCH, micro_setup, unlearn_config  # noqa: E402

pipeline = importlib.import_module("grin_unlearn.pipeline")

PER_DEVICE_BATCH = 2  # unlearn_config()'s batch size: 2 per process, 4 per step over 2 processes
SELECT_ARGS = ["--forget", "forget10", "--retain", "retain90", "--retain-samples", str(RETAIN), "--seed", str(SEED),
               "--scorer", "grin", "--ratio", "0.1", "--score-batch-size", str(EXACT_BATCH)]


def kl_config() -> UnlearnConfig:
    """GradDiff + KL-to-reference retain term, 2 per process × 2 micro-batches per step, no noise.

    12 forget examples: 3 micro-batches per process, so the steps take 2 and then 1 micro-batch.
    """
    base = unlearn_config()
    return dataclasses.replace(
        base, objective="graddiff", noise=NoiseConfig(noise_var=0.0),
        train=dataclasses.replace(base.train, gradient_accumulation_steps=2),
        hyperparams=ObjectiveHyperparams(retain_loss="kl"))


def selection_cases() -> list[tuple[float, dict[str, torch.Tensor]]]:
    """``(ratio, full fp32 scores)`` with many exact ties across shard and tensor boundaries.

    Shapes: 7 rows on 2 ranks (4 + 3), 1 row (rank 1 holds nothing), 10 rows; values from 4 levels
    (so the threshold value is shared by hundreds of entries), one case with negative scores and -0.0.
    """
    gen = torch.Generator().manual_seed(7)
    levels = torch.tensor([0.0, 0.25, 0.5, 1.0])

    def draw(shape, values=levels):
        return values[torch.randint(len(values), shape, generator=gen)]

    tied = {"a": draw((7, 5)), "b": draw((1, 9)), "c": draw((10, 3))}
    signed = {name: t - 0.5 for name, t in tied.items()}
    signed["b"][0, :3] = -0.0
    return [(0.1, tied), (0.37, tied), (0.5, signed), (0.9, {"x": draw((3, 4)), "y": draw((5,))})]


def _sharded_like_rows(full: dict[str, torch.Tensor], mesh) -> dict[str, torch.Tensor]:
    from torch.distributed.tensor import Shard, distribute_tensor

    return {name: distribute_tensor(t.clone(), mesh, [Shard(0)]) for name, t in full.items()}


def main(out: Path, model_dir: Path, world_dir: Path) -> None:
    torch.set_num_threads(1)
    init_from_launcher()
    rank, world_size = dist.get_rank(), dist.get_world_size()
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh("cpu", (world_size,))
    keep: dict[str, torch.Tensor] = {}  # rank 0's full tensors
    info: dict = {"rank": rank, "world_size": world_size}

    def record(prefix: str, named: dict[str, torch.Tensor]) -> None:
        full = {n: (t.full_tensor() if hasattr(t, "full_tensor") else t) for n, t in named.items()}
        if rank == 0:
            keep.update({f"{prefix}/{n}": t.detach().clone().contiguous() for n, t in full.items()})

    # 1. selection over shards
    for i, (ratio, scores) in enumerate(selection_cases()):
        record(f"case{i}", select_top_fraction(_sharded_like_rows(scores, mesh), ratio))
    poisoned = {name: t.clone() for name, t in selection_cases()[0][1].items()}
    poisoned["c"][9, 1] = float("nan")  # row 9: rank 1's shard
    try:
        select_top_fraction(_sharded_like_rows(poisoned, mesh), 0.1)
    except UserInputError as err:
        info["nan_error"] = str(err)

    # 2. scoring on the sharded model
    world, tokenizer, model = micro_setup()
    forget, retain = world["forget10"], world["retain90"][:RETAIN]
    shard_model(model)
    info["local_rows"] = {n: local(p).shape[0] for n, p in model.named_parameters() if p.ndim == 2}
    exact = score_influence(model, tokenizer, forget, retain, "grin", batch_size=EXACT_BATCH, seed=SEED,
                            retain_squares=True)
    record("gf", exact.forget_grads)
    record("gr", exact.retain_grads)
    record("gr_squares", exact.retain_squares)
    record("scores", exact.scores)
    info["accumulator_rows"] = {n: local(g).shape[0] for n, g in exact.forget_grads.items()}
    balance, knee = balance_ratio(exact.scores, exact.forget_grads, exact.retain_squares), knee_ratio(exact.scores)
    info["auto_ratio"] = {"balance": [balance.selected, balance.weights, balance.forget_gain_share],
                          "knee": [knee.selected, knee.weights, knee.mean_score]}
    small = score_influence(model, tokenizer, forget, retain, "grin", batch_size=SMALL_BATCH, seed=SEED)
    record("gf_small", small.forget_grads)
    record("gr_small", small.retain_grads)

    # 3. the pipeline; noised weights caught right after the noise
    real_inject_noise = pipeline.inject_noise

    def recording_inject_noise(params, masks, *args, **kwargs):
        summary = real_inject_noise(params, masks, *args, **kwargs)
        record("noised", params)
        info["noise"] = summary
        return summary

    pipeline.inject_noise = recording_inject_noise
    model = build_tiny_model(MICRO_MODEL, tokenizer, seed=SEED)  # a fresh model: unlearn() shards it itself
    result = pipeline.unlearn(model, tokenizer, forget, retain, unlearn_config(), out / "run", log=lambda *_: None)
    record("mask", result.masks)
    final = full_state_dict(model)
    if rank == 0:
        keep.update({f"final/{n}": t.contiguous() for n, t in final.items()})
    info["train_loss"] = result.train_loss
    info["run_finished_when_returned"] = is_finished(out / "run")
    info["mask_shard_rows"] = {n: local(m).shape[0] for n, m in result.masks.items()}
    model = build_tiny_model(MICRO_MODEL, tokenizer, seed=SEED)
    kl = pipeline.unlearn(model, tokenizer, forget, retain, kl_config(), out / "run_kl",
                          mask_path=out / "run" / "mask.safetensors", log=lambda *_: None)
    final = full_state_dict(model)
    if rank == 0:
        keep.update({f"final_kl/{n}": t.contiguous() for n, t in final.items()})
    info["train_loss_kl"] = kl.train_loss

    # 4. the CLI
    cli_main(["select", "--model", str(model_dir), "--data", str(world_dir), "--out", str(out / "select"), *SELECT_ARGS])

    if rank == 0:
        save_file(keep, str(out / "fsdp2.safetensors"))
    (out / f"rank{rank}.json").write_text(json.dumps(info, indent=1))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: accelerate launch ... tests/fsdp2_worker.py OUT MODEL_DIR WORLD_DIR")
    target = Path(sys.argv[1])
    target.mkdir(parents=True, exist_ok=True)
    main(target, Path(sys.argv[2]), Path(sys.argv[3]))
