"""GRIN under ``torchrun`` on CPU (gloo): the worker script driven by ``tests/test_distributed.py``.

Not a test module (no ``test_`` prefix, so pytest does not collect it). Run it by hand with::

    OMP_NUM_THREADS=1 torchrun --nproc_per_node 2 tests/distributed_worker.py OUT MODEL_DIR WORLD_DIR

Every rank builds the same micro world, tokenizer and model from the same seeds, then

1. scores the eligible weights with GRIN at ``EXACT_BATCH`` (each gradient pass has at most one batch
   per rank, so the all-reduced ``G`` is bit-identical to one process's sum) and at batch size
   ``SMALL_BATCH`` (several batches per rank: equal up to fp32 summation order);
2. runs the whole :func:`grin_unlearn.pipeline.unlearn` pipeline (GRIN selection, noise, masked NPO with
   weight decay, DDP through the Trainer) into ``OUT/run`` (written by rank 0 only);
3. runs ``grin-unlearn select`` on ``MODEL_DIR`` / ``WORLD_DIR`` into ``OUT/select`` (batches shared,
   ``G`` all-reduced, rank 0 writes).

and writes ``OUT/rank<N>.safetensors`` (fp32/bool tensors, keys ``<what>/<parameter name>``):

    initial/*  eligible weights as built          scores/*  GRIN scores at EXACT_BATCH
    gf_small/*, gr_small/*  G_f, G_r at SMALL_BATCH  mask_small/*  their top-RATIO mask
    mask/*     the mask unlearn() selected         noised/*  eligible weights right after the noise,
    final/*    every parameter after unlearning              before the Trainer wraps the model in DDP

plus ``OUT/rank<N>.json`` (world size, rank, noise summary, train loss).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for `tests.conftest`

from safetensors.torch import save_file  # noqa: E402

from grin_unlearn.config import NoiseConfig, SelectionConfig, TrainConfig, UnlearnConfig  # noqa: E402
from grin_unlearn.data.world import generate_world, world_corpus  # noqa: E402
from grin_unlearn.scoring import score_influence  # noqa: E402
from grin_unlearn.models import build_tiny_model, train_tokenizer  # noqa: E402
from grin_unlearn.run_dir import is_finished  # noqa: E402
from grin_unlearn.selection.top_fraction import select_top_fraction  # noqa: E402
from tests.conftest import MICRO_MODEL  # noqa: E402

# The module, not the `unlearn` function that grin_unlearn/__init__.py re-exports under the same name.
pipeline = importlib.import_module("grin_unlearn.pipeline")

RATIO = 0.1
SEED = 0
NOISE_VAR = 1e-3
RETAIN = 24  # retain records used (first RETAIN of retain90)
EXACT_BATCH = 12  # forget: 1 batch (rank 0), retain: 2 batches (one per rank)
SMALL_BATCH = 4  # forget: 3 batches (2 + 1), retain: 6 batches (3 + 3)


def micro_setup():
    """(world, tokenizer, model): the same on every process and in the test (same seeds as conftest)."""
    world = generate_world(authors=10, holdout_authors=1, seed=SEED, questions_per_author=12)
    tokenizer = train_tokenizer(world_corpus(world), MICRO_MODEL.vocab_size)
    return world, tokenizer, build_tiny_model(MICRO_MODEL, tokenizer, seed=SEED)


def unlearn_config() -> UnlearnConfig:
    """GRIN + NPO, noise σ²=1e-3, weight decay 0.1: 12 forget examples / (2 per rank × 2 ranks) = 3 steps."""
    return UnlearnConfig(
        objective="npo",
        selection=SelectionConfig(scorer="grin", ratio=RATIO, score_batch_size=EXACT_BATCH),
        noise=NoiseConfig(noise_var=NOISE_VAR, noise_probe=True),
        train=TrainConfig(epochs=1, lr=1e-2, batch_size=2, weight_decay=0.1, warmup_ratio=0.0, seed=SEED),
    )


def main(out: Path, model_dir: Path, world_dir: Path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")  # before scoring, so the gradient passes below are sharded
    rank, world_size = dist.get_rank(), dist.get_world_size()
    world, tokenizer, model = micro_setup()
    forget, retain = world["forget10"], world["retain90"][:RETAIN]
    tensors: dict[str, torch.Tensor] = {}

    def keep(prefix: str, named: dict[str, torch.Tensor]) -> None:
        tensors.update({f"{prefix}/{name}": t.detach().clone().contiguous() for name, t in named.items()})

    exact = score_influence(model, tokenizer, forget, retain, "grin", batch_size=EXACT_BATCH, seed=SEED)
    keep("initial", {name: dict(model.named_parameters())[name] for name in exact.scores})
    keep("scores", exact.scores)
    small = score_influence(model, tokenizer, forget, retain, "grin", batch_size=SMALL_BATCH, seed=SEED)
    keep("gf_small", small.forget_grads)
    keep("gr_small", small.retain_grads)
    keep("mask_small", select_top_fraction(small.scores, RATIO))

    # The noised weights must be caught before the Trainer wraps the model: DDP broadcasts rank 0's
    # parameters at that point, which would hide a rank whose noise differed.
    real_inject_noise = pipeline.inject_noise

    def recording_inject_noise(params, masks, *args, **kwargs):
        summary = real_inject_noise(params, masks, *args, **kwargs)
        keep("noised", params)
        return summary

    pipeline.inject_noise = recording_inject_noise
    out_run = out / "run"
    result = pipeline.unlearn(model, tokenizer, forget, retain, unlearn_config(), out_run, log=lambda *_: None)
    keep("mask", result.masks)
    keep("final", dict(model.named_parameters()))
    from grin_unlearn.cli import main as cli_main
    from tests.fsdp2_worker import SELECT_ARGS

    cli_main(["select", "--model", str(model_dir), "--data", str(world_dir), "--out", str(out / "select"), *SELECT_ARGS])

    save_file(tensors, str(out / f"rank{rank}.safetensors"))
    info = {"rank": rank, "world_size": world_size, "train_loss": result.train_loss,
            "run_finished_when_returned": is_finished(out_run)}
    (out / f"rank{rank}.json").write_text(json.dumps(info, indent=1))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: torchrun --nproc_per_node 2 tests/distributed_worker.py OUT MODEL_DIR WORLD_DIR")
    os.environ.setdefault("GRIN_UNLEARN_QUIET", "1")
    target = Path(sys.argv[1])
    target.mkdir(parents=True, exist_ok=True)
    main(target, Path(sys.argv[2]), Path(sys.argv[3]))
