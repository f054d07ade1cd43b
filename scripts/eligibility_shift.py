"""Which weights GRIN may touch, and the forget quality it can reach: the table of docs/results.md.

    OMP_NUM_THREADS=1 python scripts/eligibility_shift.py --out runs/eligibility   # seeds 0, 1, 2

The demo's two tuned configs (:class:`grin_unlearn.experiments.demo.DemoConfig`: the unmasked NPO's and
GRIN + NPO's hyperparameters), each run three ways on the embedded benchmark's forget10:

* ``unmasked`` — every parameter trains (scorer ``none``);
* ``GRIN, blocks`` — GRIN's top-p of the default eligible weights (the transformer blocks' matrices);
* ``GRIN, blocks + embeddings + lm_head`` — the same p of a pool that also holds ``embed_tokens`` and
  ``lm_head`` (``--include embed_tokens lm_head``).

GRIN's runs keep the tuned p and σ² of the demo. With ``--probes`` it instead runs the unmasked NPO's
settings with every weight of a pool trained (p = 1, no noise) for four pools: the blocks, + lm_head,
+ embed_tokens, + both (``--seeds 0`` for the docs' single-seed probes; written to ``<out>/probes.md``). Prints, and writes to ``<out>/eligibility.md``, mean ±
sample std over the seeds of forget quality, its KS distance in forget questions, model utility, the
keyword accuracies and the median forget-set ``ln R`` (the oracle's and the target's for reference), and
the count of forget-set tokens that occur in no retain or world-facts record: embedding rows only the
forget set trains.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter
from dataclasses import replace
from pathlib import Path

from grin_unlearn.data.records import load_qa_split
from grin_unlearn.evaluation import default_roles
from grin_unlearn.experiments.aggregate import mean_std
from grin_unlearn.experiments.demo import DemoConfig, cached_eval_name
from grin_unlearn.experiments.embedded import prepare_embedded
from grin_unlearn.experiments.runs import run_cell
from grin_unlearn.experiments.truth_ratio_shift import shift_rows
from grin_unlearn.models import load_tokenizer

METRICS = ("forget_quality", "ks_questions", "model_utility", "forget_keyword_accuracy", "retain_keyword_accuracy",
           "median_ln_r")
POOL = ["embed_tokens", "lm_head"]


def variants(config: DemoConfig) -> dict[str, object]:
    """name -> UnlearnConfig (seed 0); the seed is set per run."""
    full, grin = list(config.unlearn_configs().values())
    out = {}
    for hp_name, hp in (("unmasked NPO's", full), ("GRIN + NPO's", grin)):
        settings = {"train": hp.train, "hyperparams": hp.hyperparams}
        out[f"{hp_name} settings | unmasked"] = replace(full, **settings)
        out[f"{hp_name} settings | GRIN, blocks"] = replace(grin, **settings)
        out[f"{hp_name} settings | GRIN, blocks + embeddings + lm_head"] = replace(
            grin, selection=replace(grin.selection, include=POOL), **settings)
    return out


def probe_variants(config: DemoConfig) -> dict[str, object]:
    """The unmasked NPO's settings, p = 1 and σ² = 0 over four pools: where the forget quality lives."""
    full, grin = list(config.unlearn_configs().values())
    return {f"unmasked NPO's settings | p = 1, no noise, blocks{' + ' + ' + '.join(pool) if pool else ''}":
            replace(grin, train=full.train, hyperparams=full.hyperparams, noise=replace(grin.noise, noise_var=0.0),
                    selection=replace(grin.selection, ratio=1.0, include=pool))
            for pool in ([], ["lm_head"], ["embed_tokens"], POOL)}


def forget_only_tokens(tokenizer, world: Path, forget: str, retain: str) -> tuple[list[str], int, int]:
    """Tokens of the forget records that no retain or world-facts record holds, their occurrences, all."""
    def count(split):
        counts = Counter()
        for record in load_qa_split(world, split):
            counts.update(tokenizer(record["question"] + " " + record["answer"])["input_ids"])
        return counts
    forget_counts, elsewhere = count(forget), count(retain) + count("world_facts")
    only = [t for t in forget_counts if t not in elsewhere]
    return [tokenizer.decode([t]) for t in only], sum(forget_counts[t] for t in only), sum(forget_counts.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/eligibility"))
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--probes", action="store_true", help="the p = 1 pool probes instead of the main table")
    args = parser.parse_args()
    config = DemoConfig()
    assets = prepare_embedded(config.embedded, None, log=lambda *a, **k: None)
    forget, retain = config.embedded.forget_split, config.embedded.retain_split
    roles = default_roles(assets.world, forget, retain)
    oracle = json.loads((assets.oracle / cached_eval_name(forget, config.eval)).read_text())
    target = json.loads((assets.target / cached_eval_name(forget, config.eval)).read_text())
    references = {row["method"]: row for row in shift_rows({"target": target}, oracle)}
    rows = []
    kind = "probe" if args.probes else "variant"
    for index, (name, unlearn_config) in enumerate((probe_variants if args.probes else variants)(config).items()):
        per_seed = []
        for seed in args.seeds:
            run_config = replace(unlearn_config, train=replace(unlearn_config.train, seed=seed))
            cell = run_cell(assets.target, assets.world, forget, retain, roles, run_config,
                            args.out / f"{kind}{index}" / f"seed{seed}", config.eval, oracle, log=lambda *a, **k: None)
            shift = shift_rows({"run": cell.eval}, oracle)[-1]
            per_seed.append({**{k: cell.eval["aggregates"][k] for k in METRICS[2:5]},
                             "forget_quality": shift["forget_quality"], "ks_questions": shift["ks_questions"],
                             "median_ln_r": shift["median"]})
            print(name, seed, json.dumps({k: round(v, 4) for k, v in per_seed[-1].items()}), flush=True)
        row = {"variant": name, "per_seed": per_seed}
        for key in METRICS:
            row[key], row[f"{key}_std"] = mean_std([s[key] for s in per_seed])
        row["forget_quality_median"] = statistics.median(s["forget_quality"] for s in per_seed)
        rows.append(row)
    tokens, occurrences, total = forget_only_tokens(load_tokenizer(str(assets.target)), assets.world, forget, retain)
    header = ["settings", "weights trained", "forget quality ↑ (median)", "KS distance (questions)", "model utility ↑",
              "forget keyword acc ↓", "retain keyword acc ↑", "median ln R (oracle "
              f"{references['oracle']['median']:+.2f}, target {references['target']['median']:+.2f})"]
    lines = [f"# Which weights GRIN may touch (forget10, seeds {args.seeds}, mean ± std)", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        settings, weights = row["variant"].split(" | ")
        cells = [settings, weights, f"{row['forget_quality']:.3f} ± {row['forget_quality_std']:.3f} "
                 f"({row['forget_quality_median']:.3f})"]
        cells += [f"{row[k]:.3f} ± {row[k + '_std']:.3f}" if k != "ks_questions" else
                  f"{row[k]:.1f} ± {row[k + '_std']:.1f}" for k in METRICS[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Forget-set tokens that occur in no {retain} or world_facts record: {len(tokens)} "
              f"({occurrences} of the forget records' {total} token occurrences): "
              + ", ".join(f"`{t.strip()}`" for t in tokens) + "."]
    args.out.mkdir(parents=True, exist_ok=True)
    name = "probes" if args.probes else "eligibility"
    (args.out / f"{name}.md").write_text("\n".join(lines) + "\n")
    (args.out / f"{name}.json").write_text(json.dumps(rows, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
