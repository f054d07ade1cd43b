"""GRIN under ``torchrun --nproc_per_node 2`` (CPU, gloo) agrees with one process.

``tests/distributed_worker.py`` scores, selects, adds noise and runs masked NPO (DDP through the
Trainer) on two processes; this test compares what each rank saved with the same steps run here in one
process. What is asserted, exactly:

* **scores, exact case** (``EXACT_BATCH``: at most one gradient batch per rank per pass): the GRIN
  scores are bit-identical on both ranks and bit-identical to the single-process scores. With two
  operands per element the all-reduce computes the same fp32 sum ``g_0 + g_1`` as one process does;
* **scores, general case** (``SMALL_BATCH``: 2-3 batches per rank): ``G_f`` and ``G_r`` are
  bit-identical across ranks and equal to the single-process sums up to fp32 summation order
  (``|Δ| <= 1e-6 · max|G|``); the masks are compared up to ties: wherever they differ, the
  single-process score must lie within a relative 1e-4 of the selection threshold (the k-th score);
* **mask** chosen inside ``unlearn()``: bit-identical on both ranks, to the single-process
  ``select_top_fraction`` of the exact-case scores and to the saved ``run/mask.safetensors``;
* **noise**: the weights right after the noise (before DDP's broadcast could hide a difference) are
  bit-identical on both ranks and to ``inject_noise`` run here with the same mask and seed;
* **masked unlearning**: final weights bit-identical on both ranks (the ranks see different data, so
  this needs DDP's averaged gradients), unselected and non-eligible weights bit-identical to the start,
  most selected weights moved, and only rank 0 wrote the run folder, finished before any rank returned;
* **``grin-unlearn select``** under torchrun writes the single-process mask, printing its summary once.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from grin_unlearn.scoring import score_influence
from grin_unlearn.masks import load_mask
from grin_unlearn.noise.injection import inject_noise
from grin_unlearn.selection.top_fraction import select_top_fraction
from tests.conftest import assert_same_tensors, saved_group
from tests.distributed_worker import EXACT_BATCH, NOISE_VAR, RATIO, RETAIN, SEED, SMALL_BATCH

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / "tests" / "distributed_worker.py"
WORLD = 2

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed with gloo"),
]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory, launcher, micro_model_dir,
          micro_world_dir) -> tuple[Path, list[dict[str, torch.Tensor]], list[dict]]:
    out = tmp_path_factory.mktemp("distributed")
    proc = launcher.run([*launcher.torchrun(WORLD), str(WORKER), str(out), str(micro_model_dir), str(micro_world_dir)],
                        timeout=240)
    tensors = [load_file(str(out / f"rank{r}.safetensors")) for r in range(WORLD)]
    infos = [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD)]
    (out / "stdout.txt").write_text(proc.stdout)
    return out, tensors, infos


def _assert_masks_agree_up_to_ties(got: dict, want: dict, scores: dict, ratio: float) -> None:
    """Equal masks, except where the score is within a relative 1e-4 of the k-th largest (a near-tie)."""
    flat = torch.cat([s.reshape(-1) for s in scores.values()])
    k = round(ratio * flat.numel())
    threshold = float(flat.topk(k).values[-1])
    for name in want:
        differ = got[name] != want[name]
        near = (scores[name][differ] - threshold).abs() <= 1e-4 * threshold
        assert bool(near.all()), f"{name}: masks differ away from the selection threshold"


def test_ranks_agree_with_each_other(ranks):
    _, (r0, r1), infos = ranks
    assert [i["world_size"] for i in infos] == [WORLD, WORLD] and [i["rank"] for i in infos] == [0, 1]
    assert_same_tensors(r0, r1, "rank 0 vs rank 1")  # initial, scores, G, masks, noised and final weights
    assert all(i["run_finished_when_returned"] for i in infos), "a rank returned before run.json was written"


def test_scores_and_mask_match_single_process(ranks, micro_world, micro_tokenizer, micro_model):
    out, (r0, _), _ = ranks
    forget, retain = micro_world["forget10"], micro_world["retain90"][:RETAIN]
    params = dict(micro_model.named_parameters())
    initial = saved_group(r0, "initial")
    assert_same_tensors(initial, {n: params[n].detach() for n in initial}, "initial weights (worker build vs conftest build)")

    exact = score_influence(micro_model, micro_tokenizer, forget, retain, "grin", batch_size=EXACT_BATCH, seed=SEED)
    assert_same_tensors(saved_group(r0, "scores"), exact.scores, "GRIN scores, one batch per rank")
    mask = select_top_fraction(exact.scores, RATIO)
    assert_same_tensors(saved_group(r0, "mask"), mask, "mask selected by unlearn()")
    saved_mask, _ = load_mask(out / "run" / "mask.safetensors")
    assert_same_tensors(saved_mask, mask, "run/mask.safetensors")

    small = score_influence(micro_model, micro_tokenizer, forget, retain, "grin", batch_size=SMALL_BATCH, seed=SEED)
    for which, want in (("gf_small", small.forget_grads), ("gr_small", small.retain_grads)):
        got = saved_group(r0, which)
        scale = max(float(g.abs().max()) for g in want.values())
        for name in want:
            torch.testing.assert_close(got[name], want[name], rtol=0, atol=1e-6 * scale, msg=f"{which} {name}")
    _assert_masks_agree_up_to_ties(saved_group(r0, "mask_small"), select_top_fraction(small.scores, RATIO),
                                   small.scores, RATIO)


def test_noise_matches_single_process(ranks):
    _, (r0, _), _ = ranks
    initial, noised, mask = saved_group(r0, "initial"), saved_group(r0, "noised"), saved_group(r0, "mask")
    expected = {name: t.clone() for name, t in initial.items()}
    inject_noise(expected, mask, NOISE_VAR, "absolute", SEED)
    assert_same_tensors(noised, expected, "weights after noise")
    changed = sum(int((noised[n][mask[n]] != initial[n][mask[n]]).sum()) for n in mask)
    assert changed == sum(int(m.sum()) for m in mask.values())


def test_masked_unlearning_moves_only_selected_weights(ranks, micro_model):
    out, (r0, _), _ = ranks
    start = {name: p.detach() for name, p in micro_model.named_parameters()}
    noised, mask, final = saved_group(r0, "noised"), saved_group(r0, "mask"), saved_group(r0, "final")
    assert final.keys() == start.keys()
    moved = 0
    for name, before in start.items():
        if name not in mask:
            assert torch.equal(final[name], before), f"{name} is not eligible but changed"
            continue
        assert torch.equal(final[name][~mask[name]], before[~mask[name]]), f"unselected entries of {name} moved"
        moved += int((final[name][mask[name]] != noised[name][mask[name]]).sum())
    assert moved > 0.5 * sum(int(m.sum()) for m in mask.values()), "masked training barely moved the selection"

    saved = {}
    for path in sorted((out / "run" / "model").glob("*.safetensors")):
        saved.update(load_file(str(path)))
    assert_same_tensors({n: saved[n] for n in final}, final, "run/model weights vs rank 0's final weights")
    assert (out / "run" / "run.json").is_file()
    assert not list((out / "run").glob(".model.*")), "a staging folder was left behind"


def test_select_command_under_torchrun(ranks, micro_model_dir, micro_world_dir, tmp_path):
    from grin_unlearn.cli import main as cli_main
    from tests.fsdp2_worker import SELECT_ARGS

    out, _, _ = ranks
    assert cli_main(["select", "--model", str(micro_model_dir), "--data", str(micro_world_dir),
                     "--out", str(tmp_path / "select"), *SELECT_ARGS]) == 0
    assert_same_tensors(load_mask(out / "select" / "mask.safetensors")[0],
                        load_mask(tmp_path / "select" / "mask.safetensors")[0], "select under torchrun vs one process")
    assert (out / "stdout.txt").read_text().count('"out":') == 1, "the select summary was printed by more than one process"
