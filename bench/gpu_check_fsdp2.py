"""The FSDP2 part of the GPU check: GRIN's scoring, selection and masked step on a ``fully_shard``-ed model.

    python bench/gpu_check_fsdp2.py --probe      # exit 0 if the library can run them (tiny model, CPU)

``bench/gpu_check.py`` calls :func:`run_fsdp2` on a machine with 2+ GPUs: first the probe (one gloo
process on the CPU, a tiny model), then ``torchrun`` over every GPU, each process running
:func:`fsdp2_steps` (the pipeline's ``shard_model``, then the steps of ``bench/memory_steps.py``: the
library's own scoring, selection and masked optimizer on the sharded parameters) and reporting its peak memory against
:func:`memory_model.predict` with ``mode="fsdp2"``. The probe runs the very code the GPUs would, so
it answers "does this version of the library support FSDP2" whatever the API that support takes.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import memory_model as mm  # noqa: E402
from memory_steps import DTYPE, RATIOS, PeakMemory, build_model, score_and_select, shard, token_examples, train_steps  # noqa: E402


def fsdp2_steps(shape_name: str, device: torch.device, dtype: torch.dtype, batch: int, seq: int,
                batches: int) -> dict:
    """Scoring, selection and two masked steps of a model sharded as the pipeline shards it
    (:func:`memory_steps.shard`; process group initialised), against the model's ``fsdp2`` mode."""
    import torch.distributed as dist

    from grin_unlearn.data.formatting import PadCollator
    from grin_unlearn.scoring import eligible_parameters

    world = dist.get_world_size()
    shape = mm.SHAPES[shape_name]
    model = shard(build_model(shape, seq, dtype), device)  # built on the CPU, moved a block at a time
    params = eligible_parameters(model)
    per_pass = -(-batches // world) * world  # every rank runs as many forwards (FSDP2 all-gathers in them)
    forget = token_examples(shape.vocab, batch * per_pass, seq, 1)
    retain = token_examples(shape.vocab, batch * per_pass, seq, 2)
    collator = PadCollator(0)
    with PeakMemory(device) as score_peak:
        masks, passes, select = score_and_select(model, params, forget, retain, collator, batch, RATIOS[-1], device)
    rows = {k: v.to(device) for k, v in collator(forget[:batch] + retain[:batch]).items()}
    with PeakMemory(device) as train_peak:
        optimizer = train_steps(model, masks, rows)
    setup = mm.Setup(w=torch.tensor([], dtype=dtype).element_size(), score_tokens=batch * seq,
                     train_tokens=2 * batch * seq, ratio=RATIOS[-1], mode="fsdp2", world=world,
                     layout=mm.layout_of(optimizer), backend=dist.get_backend())
    pred = mm.predict(shape, setup)
    return {"world": world, "passes_seconds": passes, "score_select_seconds": select,
            "scoring_peak": score_peak.peak, "scoring_predicted": mm.peak_over_start(pred, "scoring"),
            "training_peak": train_peak.peak, "training_predicted": mm.peak_over_start(pred, "training")}


def probe() -> None:
    """Exit 0 if :func:`fsdp2_steps` runs on a tiny model in one gloo process; else print why, exit 1."""
    import torch.distributed as dist

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        fsdp2_steps("tiny", torch.device("cpu"), torch.float32, batch=2, seq=16, batches=1)
    except Exception as error:  # any failure means: not supported by this version of the library
        print(f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300])
        sys.exit(1)
    finally:
        dist.destroy_process_group()


def child(args) -> None:
    """One torchrun process: initialise, run :func:`fsdp2_steps`, rank 0 writes every rank's numbers."""
    import torch.distributed as dist

    cuda = args.device == "cuda"
    local = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo")
    result = fsdp2_steps(args.shape, device, DTYPE, args.batch, args.seq, args.batches)
    ranks = [None] * dist.get_world_size()
    dist.all_gather_object(ranks, result)
    if dist.get_rank() == 0:
        Path(args.child).write_text(json.dumps(ranks))
    dist.destroy_process_group()


def run_fsdp2(args, procs: int) -> dict:
    """Probe, then ``torchrun`` the FSDP2 check over ``procs`` processes; ``{"skipped": why}`` if it cannot."""
    here = Path(__file__).resolve()
    probed = subprocess.run([sys.executable, str(here), "--probe"], capture_output=True, text=True, timeout=300)
    if probed.returncode != 0:
        why = (probed.stdout.strip().splitlines() or probed.stderr.strip().splitlines() or ["unknown"])[-1]
        return {"skipped": f"the library cannot score/select/train a fully_shard-ed model yet ({why})"}
    out = Path(args.out).with_suffix(".fsdp2.json")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}", str(here),
               "--child", str(out), "--device", args.device, "--shape", args.shape, "--batch", str(args.batch),
               "--seq", str(args.seq), "--batches", str(args.batches)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if run.returncode != 0:
        return {"failed": (run.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    ranks = json.loads(out.read_text())
    out.unlink()
    return {"world": procs, "ranks": ranks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probe", action="store_true", help="exit 0 if the library supports FSDP2 (tiny, CPU)")
    parser.add_argument("--child", metavar="OUT", help="run as one torchrun process; rank 0 writes OUT")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--shape", default="1b", choices=sorted(mm.SHAPES))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--batches", type=int, default=4)
    args = parser.parse_args()
    if args.probe:
        return probe()
    if not args.child:
        parser.error("expected --probe or --child OUT (bench/gpu_check.py runs this)")
    child(args)


if __name__ == "__main__":
    main()
