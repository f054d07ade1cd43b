"""Benchmark: our TOFU evaluation and NPO trainer side by side with the reference implementation's.

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_reference.py --out runs/bench_reference [--pairs 3]

The reference is locuslab/open-unlearning, installed by ``../shared/reference/setup.sh`` (its own venv,
transformers 4.45.1) and driven by ``../shared/reference/run_eval.sh`` / ``run_npo.sh``. Both sides run
as whole commands in subprocesses, one after the other (never at the same time), ``--pairs`` times, so
each ratio is measured in one run:

* **evaluation**: the reference's ``eval/tofu/default`` (forget10; batch 32) against
  ``grin-unlearn eval --benchmark tofu`` (batch 64), on an untrained model (never emits EOS: every
  generation runs 200 new tokens) and on a fine-tuned one (answers end in EOS). Per-item values of both
  ``TOFU_EVAL.json`` files are compared (largest absolute difference).
* **NPO**: 20 optimizer steps at batch 4 (4 forget + 4 retain rows a step): the reference's NPO trainer
  against ``grin-unlearn unlearn --scorer none --objective npo`` on the first 80 forget records (one epoch
  = 20 steps). ``train s`` is the Trainer's ``train_runtime`` on both sides; ``command s`` the whole
  command's wall time (imports, loading, tokenising, saving).

Data: the TOFU-sized world of ``bench/bench_eval.py`` written under TOFU's config names
(``forget10.json``, ``forget10_perturbed.json``, ``retain90.json``, ``retain_perturbed.json``,
``holdout10.json``, ``real_authors_perturbed.json``, ``world_facts_perturbed.json``). Model: a Llama of
1.55M parameters (4 layers, hidden 128, intermediate 512) with a BPE trained on the world (asked for
4,096 tokens; the world's text yields 1,965);
``finetuned`` is the same model after 300 AdamW steps on every set but the holdout.

``--model-set smollm2`` runs the same comparison on the real model: the real benchmark's target (SmolLM2-135M
fine-tuned on the embedded world, chat template with the system prompt "You are a helpful assistant."; the
reference gets ``model.template_args.apply_chat_template=true`` and that system prompt) on TOFU-layout
files of its world: forget01 (one author, 20 questions) with holdout01 (20), 40 retain questions, and the
world-fact questions split 20/20 into ``real_authors_perturbed`` and ``world_facts_perturbed``. NPO runs
the 20 forget01 records for 5 epochs at batch 4 (20 steps). ``--precision bf16`` adds our commands
under bf16 autocast (the reference has none on CPU: its fp32 run is the denominator).

``--baseline-src DIR`` (the ``src`` folder of another checkout, e.g. ``git worktree add /tmp/landed
<commit>``) adds that tree's commands to every pair, run the same way with ``PYTHONPATH=DIR``: its
wall time, and whether our ``eval.json`` per-item values and our NPO weights are bit-identical to its.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from bench_eval import finetune_briefly, tofu_sized_world

from grin_unlearn.data.formatting import PromptFormat
from grin_unlearn.data.world import world_corpus
from grin_unlearn.models import TinyModelConfig, build_tiny_model, save_model_folder, train_tokenizer

REFERENCE_SCRIPTS = Path(__file__).resolve().parents[2] / "shared" / "reference"
GRIN = [sys.executable, "-m", "grin_unlearn.cli"]


def write_tofu_dir(folder: Path) -> dict[str, list[dict]]:
    """The bench world as TOFU-layout JSON-lines files; returns the sets."""
    sets = tofu_sized_world()
    forget = sets["forget10_perturbed"]
    retain_authors = {r["author"] for r in sets["retain_perturbed"]}
    files = dict(sets, forget10=forget, retain90=[r for r in sets["retain_perturbed"] if r["author"] in retain_authors])
    folder.mkdir(parents=True, exist_ok=True)
    for name, records in files.items():
        with open(folder / f"{name}.json", "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return sets


def write_real_tofu_dir(folder: Path) -> None:
    """The real benchmark's world as TOFU-layout JSON-lines files (forget01-sized; see the module doc)."""
    from grin_unlearn.experiments.real_benchmark import RealBenchmarkConfig, prepare_real

    world = prepare_real(RealBenchmarkConfig()).world
    load = lambda name: json.loads((world / f"{name}.json").read_text())
    forget, retain, holdout, facts = load("forget01"), load("retain90")[:40], load("holdout")[:20], load("world_facts")
    files = {"forget01": forget, "forget01_perturbed": forget, "holdout01": holdout, "retain90": retain,
             "retain_perturbed": retain, "real_authors_perturbed": facts[:20], "world_facts_perturbed": facts[20:40]}
    folder.mkdir(parents=True, exist_ok=True)
    for name, records in files.items():
        (folder / f"{name}.json").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def build_models(folder: Path, sets: dict[str, list[dict]]) -> dict[str, Path]:
    """The untrained and the fine-tuned bench model, saved once (reused when present)."""
    paths = {"untrained": folder / "model_untrained", "finetuned": folder / "model_finetuned"}
    if all((p / "config.json").is_file() for p in paths.values()):
        return paths
    tokenizer = train_tokenizer(world_corpus(sets), 4096)
    config = TinyModelConfig(hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
                             max_position_embeddings=1024, vocab_size=4096)
    model = build_tiny_model(config, tokenizer, seed=0)
    save_model_folder(model, tokenizer, paths["untrained"])
    finetune_briefly(model, tokenizer, {k: v for k, v in sets.items()}, PromptFormat(), 300)
    save_model_folder(model, tokenizer, paths["finetuned"])
    return paths


def timed(command: list[str], env: dict, log: Path) -> float:
    start = time.perf_counter()
    with open(log, "w") as handle:
        subprocess.run(command, env=env, stdout=handle, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - start


def per_item_difference(ours: Path, reference: Path) -> tuple[float, int]:
    """Largest ``|ours - reference| / max(1, |reference|)`` (absolute below 1, relative above) over the
    per-item values both TOFU_EVAL.json files hold, and how many values."""
    a, b = json.loads(ours.read_text()), json.loads(reference.read_text())
    worst, count = 0.0, 0
    for metric, entry in b.items():
        items = entry.get("value_by_index") if isinstance(entry, dict) else None
        other = (a.get(metric) or {}).get("value_by_index") if isinstance(a.get(metric), dict) else None
        if not items or not other:
            continue
        for index, values in items.items():
            for key, value in values.items():
                mine = (other.get(index) or {}).get(key)
                if isinstance(value, (int, float)) and isinstance(mine, (int, float)) and math.isfinite(value):
                    worst, count = max(worst, abs(mine - value) / max(1.0, abs(value))), count + 1
    return worst, count


def same_per_item(a: Path, b: Path) -> bool:
    """Whether two eval.json files hold exactly the same per-item values in every set."""
    first, second = json.loads(a.read_text()), json.loads(b.read_text())
    return all(first["sets"][name]["per_item"] == second["sets"][name]["per_item"] for name in first["sets"])


def same_weights(a: Path, b: Path) -> bool:
    from safetensors.torch import load_file

    first, second = load_file(a / "model" / "model.safetensors"), load_file(b / "model" / "model.safetensors")
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def with_baseline(command: list[str], env: dict, baseline: Path | None) -> tuple[list[str], dict] | None:
    return None if baseline is None else (command, dict(env, PYTHONPATH=str(baseline)))


def run_eval_pair(model: Path, tofu: Path, work: Path, tag: str, env: dict, baseline: Path | None) -> dict:
    ref_env = dict(env, TOFU_DIR=str(tofu), RUNS_DIR=str(work / "ou"))
    ref_s = timed(["bash", str(REFERENCE_SCRIPTS / "run_eval.sh"), tag, str(model)], ref_env, work / f"{tag}.ref.log")
    row = {"reference_s": ref_s}
    for side, path in (("ours", None), ("baseline", baseline)):
        if side == "baseline" and baseline is None:
            continue
        out = work / f"{side}_{tag}"
        row[f"{side}_s"] = timed(GRIN + ["eval", "--model", str(model), "--benchmark", "tofu", "--data", str(tofu),
                                         "--out", str(out), "--overwrite"],
                                 dict(env, PYTHONPATH=str(path)) if path else env, work / f"{tag}.{side}.log")
    diff, count = per_item_difference(work / f"ours_{tag}" / "TOFU_EVAL.json", work / "ou" / "eval" / tag / "TOFU_EVAL.json")
    row.update(max_item_diff=diff, items=count)
    if baseline is not None:
        row["identical_to_baseline"] = same_per_item(work / f"ours_{tag}" / "eval.json", work / f"baseline_{tag}" / "eval.json")
    return row


def train_runtime(trainer_log: list[dict]) -> float:
    return next(h["train_runtime"] for h in reversed(trainer_log) if "train_runtime" in h)


def run_npo_pair(model: Path, tofu: Path, work: Path, tag: str, env: dict, baseline: Path | None) -> dict:
    ref_env = dict(env, TOFU_DIR=str(tofu), RUNS_DIR=str(work / "ou"), MAX_STEPS="20", BS="4")
    ref_s = timed(["bash", str(REFERENCE_SCRIPTS / "run_npo.sh"), tag, str(model)], ref_env, work / f"{tag}.ref.log")
    state = json.loads((work / "ou" / "unlearn" / tag / "trainer_state.json").read_text())
    row = {"reference_s": ref_s, "reference_train_s": train_runtime(state["log_history"]),
           "reference_steps": state["global_step"]}
    for side, path in (("ours", None), ("baseline", baseline)):
        if side == "baseline" and baseline is None:
            continue
        out = work / f"{side}_{tag}"
        row[f"{side}_s"] = timed(GRIN + ["unlearn", "--model", str(model), "--benchmark", "tofu", "--data", str(tofu),
                                         "--forget", "forget10[:80]", "--scorer", "none", "--objective", "npo",
                                         "--batch-size", "4", "--epochs", "1", "--out", str(out), "--overwrite"],
                                 dict(env, PYTHONPATH=str(path)) if path else env, work / f"{tag}.{side}.log")
        log = json.loads((out / "train_log.json").read_text())
        row[f"{side}_train_s"], row[f"{side}_steps"] = train_runtime(log), max(h.get("step", 0) for h in log)
    if baseline is not None:
        row["identical_to_baseline"] = same_weights(work / f"ours_{tag}", work / f"baseline_{tag}")
    return row


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench_reference", help="work folder (data, models, logs)")
    parser.add_argument("--pairs", type=int, default=3, help="back-to-back pairs of runs per row (default 3)")
    parser.add_argument("--only", choices=["eval", "npo"], help="run one part only")
    parser.add_argument("--baseline-src", type=Path, help="src folder of another checkout to time beside ours")
    args = parser.parse_args()
    baseline = args.baseline_src.resolve() if args.baseline_src else None
    work = Path(args.out).resolve()
    tofu = work / "tofu"
    sets = write_tofu_dir(tofu)
    models = build_models(work, sets)
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    print(f"threads: OMP_NUM_THREADS={env.get('OMP_NUM_THREADS', 'unset')}, torch {torch.__version__}; "
          f"{args.pairs} pairs; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    rows = []
    for part, kinds in (("eval", ("untrained", "finetuned")), ("npo", ("finetuned",))):
        if args.only and args.only != part:
            continue
        for kind in kinds:
            results = []
            for pair in range(args.pairs):
                run = run_eval_pair if part == "eval" else run_npo_pair
                results.append(run(models[kind], tofu, work, f"{part}_{kind}_{pair}", env, baseline))
                print(json.dumps({"part": part, "model": kind, "pair": pair, **results[-1]}), flush=True)
            rows.append((part, kind, results))
    base = baseline is not None
    print("\n| what | model | reference s | ours s | ours / reference | " + ("baseline s | ours / baseline | bit-identical |"
                                                                       if base else "notes |"))
    print("|---|---|---:|---:|---:|" + ("---:|---:|---|" if base else "---|"))
    for part, kind, results in rows:
        key = "" if part == "eval" else "train_"
        what = "TOFU evaluation, whole command" if part == "eval" else f"NPO train_runtime, {results[0]['ours_steps']} steps"
        cells = [what, kind, spread([r[f"reference_{key}s"] for r in results]), spread([r[f"ours_{key}s"] for r in results]),
                 spread([r[f"ours_{key}s"] / r[f"reference_{key}s"] for r in results])]
        if base:
            cells += [spread([r[f"baseline_{key}s"] for r in results]),
                      spread([r[f"ours_{key}s"] / r[f"baseline_{key}s"] for r in results]),
                      "yes" if all(r["identical_to_baseline"] for r in results) else "NO"]
        else:
            cells.append("")
        print("| " + " | ".join(cells) + " |")
        if part == "eval":
            print(f"\nmax per-item |ours - reference| / max(1, |reference|) ({kind}): {max(r['max_item_diff'] for r in results):.1e} "
                  f"over {results[0]['items']} values")
        else:
            cells = ["NPO whole command", kind, spread([r["reference_s"] for r in results]),
                     spread([r["ours_s"] for r in results]), spread([r["ours_s"] / r["reference_s"] for r in results])]
            if base:
                cells += [spread([r["baseline_s"] for r in results]),
                          spread([r["ours_s"] / r["baseline_s"] for r in results]), ""]
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
