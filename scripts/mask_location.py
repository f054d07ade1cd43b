"""Where the mask goes: the share of selected weights per module type and per depth, by scorer.

    python scripts/mask_location.py --real --out docs/results/mask_location_real.md   # SmolLM2 target
    python scripts/mask_location.py --out docs/results/mask_location_tiny.md          # embedded tiny target

GRIN's third mechanism (arXiv 2508.06467) says its score finds factual memory in the feed-forward
layers. On the benchmark's target, with its forget10 and retain90 splits in its prompt format, ``G_f``
and ``G_r`` are accumulated once over every weight of the transformer blocks plus the (tied) embedding
(``--include embed_tokens``); then the scorers ``grin``, ``wagle``, ``forget-grad`` and ``random``
each select the global top p (default 0.1 and 0.4). Per module type (q/k/v/o, gate/up/down, the
embedding) the table gives the share of the selected weights against the share of all eligible
weights (a scorer with no preference matches the second column), and per third of the depth the
same. Norm weights are 1-D and not eligible by default, so they are not in the pool.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from grin_unlearn.data.formatting import PromptFormat
from grin_unlearn.data.records import load_qa_split
from grin_unlearn.io_utils import atomic_write_text
from grin_unlearn.masks import density_report, layer_index
from grin_unlearn.models import load_model, load_tokenizer
from grin_unlearn.scoring import eligible_parameters
from grin_unlearn.scoring.influence import score_influence
from grin_unlearn.scoring.scorers import ScoringContext, get_scorer
from grin_unlearn.selection.top_fraction import select_top_fraction

SCORERS = ("grin", "wagle", "forget-grad", "random")


def benchmark(real: bool):
    if real:
        from grin_unlearn.experiments.real_benchmark import prepare_real

        return prepare_real()
    from grin_unlearn.experiments.embedded import prepare_embedded

    return prepare_embedded()


def depth_bins(masks: dict[str, torch.Tensor], layers: int) -> dict[str, dict]:
    """Selected and total weights per third of the blocks (``embedding`` outside them)."""
    bins: dict[str, dict] = {}
    for name, mask in masks.items():
        index = layer_index(name)
        key = "embedding" if index is None else f"layers {3 * index // layers + 1}/3"
        entry = bins.setdefault(key, {"selected": 0, "total": 0})
        entry["selected"] += int(mask.count_nonzero())
        entry["total"] += mask.numel()
    return dict(sorted(bins.items()))


def share_table(title: str, groups: dict[str, dict[str, dict]], order: list[str]) -> list[str]:
    """Rows: group; columns: share of all eligible weights, then each scorer's share of its selection."""
    names = list(groups)
    first = groups[names[0]]
    total = sum(v["total"] for v in first.values())
    lines = [f"| {title} | share of weights | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
    for key in order:
        cells = [f"{first[key]['total'] / total:.1%}"]
        for name in names:
            selected = sum(v["selected"] for v in groups[name].values())
            cells.append(f"{groups[name][key]['selected'] / selected:.1%}" if selected else "–")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", action="store_true", help="the real-model benchmark (else the tiny embedded one)")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.1, 0.4])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    assets = benchmark(args.real)
    config = assets.config
    model = load_model(str(assets.target), dtype="float32", device="cpu")
    tokenizer = load_tokenizer(str(assets.target))
    fmt = PromptFormat.load(assets.target) or PromptFormat()
    forget = load_qa_split(assets.world, config.forget_split)
    retain = load_qa_split(assets.world, config.retain_split)
    params = eligible_parameters(model, ["embed_tokens"])
    grin = score_influence(model, tokenizer, forget, retain, "grin", fmt, params=params)
    layers = 1 + max(layer_index(n) for n in params if layer_index(n) is not None)
    lines = [f"# Where the mask goes: {'SmolLM2-135M target' if args.real else 'tiny embedded target'}", "",
             f"`python scripts/mask_location.py {'--real ' if args.real else ''}--out {args.out}`; "
             f"{len(forget)} forget and {len(retain)} retain examples, {sum(p.numel() for p in params.values()):,} "
             f"eligible weights (block matrices + embedding), {layers} blocks. Cells: share of each scorer's "
             "selected weights; 'share of weights': the pool's own share (no preference).", ""]
    for ratio in args.ratios:
        by_module, by_depth = {}, {}
        for scorer in SCORERS:
            ctx = ScoringContext(params, grin.forget_grads, grin.retain_grads)
            with torch.no_grad():
                masks = select_top_fraction(get_scorer(scorer)(ctx), ratio)
            by_module[scorer] = density_report(masks)["by_module"]
            by_depth[scorer] = depth_bins(masks, layers)
        modules = sorted(by_module["grin"], key=lambda k: -by_module["grin"][k]["total"])
        lines += [f"## p = {ratio}", ""] + share_table("module", by_module, modules) + [""]
        lines += share_table("depth", by_depth, list(by_depth["grin"])) + [""]
    atomic_write_text(args.out, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
