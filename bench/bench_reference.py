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
# Per model set: the reference's split names and extra Hydra overrides, our extra eval/unlearn arguments.
SETTINGS = {
    "tiny": {"env": {}, "overrides": [], "eval": [], "npo": ["--forget", "forget10[:80]", "--epochs", "1"]},
    "smollm2": {"env": {"FORGET_SPLIT": "forget01", "HOLDOUT_SPLIT": "holdout01"},
                "overrides": ["model.template_args.apply_chat_template=true",
                              "+model.template_args.system_prompt='You are a helpful assistant.'"],
                "eval": ["--forget", "forget01"],
                "npo": ["--forget", "forget01", "--retain", "retain90", "--epochs", "4"]},
}
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


def real_target_with_free_pad(work: Path) -> Path:
    """A copy of the real target whose pad token is ``<|endoftext|>`` (id 0) instead of ``<|im_end|>``:
    the reference's collator masks every token equal to the pad id from attention, and ``<|im_end|>``
    closes each chat turn (docs/evaluation.md). Weights and every other file unchanged."""
    import shutil

    from grin_unlearn.experiments.real_benchmark import RealBenchmarkConfig, prepare_real

    target, folder = prepare_real(RealBenchmarkConfig()).target, work / "target_free_pad"
    if not (folder / "config.json").is_file():
        shutil.copytree(target, folder, dirs_exist_ok=True)
        for name, key, value in (("tokenizer_config.json", "pad_token", "<|endoftext|>"),
                                 ("generation_config.json", "pad_token_id", 0), ("config.json", "pad_token_id", 0)):
            settings = json.loads((folder / name).read_text())
            settings[key] = value
            (folder / name).write_text(json.dumps(settings, indent=1))
    return folder


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


def timed(command: list[str], env: dict, log: Path) -> tuple[float, float]:
    """Wall seconds of ``command`` and its peak resident memory in MB (GNU time: the largest process of
    its tree)."""
    start = time.perf_counter()
    peak = log.with_suffix(".peak")
    with open(log, "w") as handle:
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(peak), *command], env=env, stdout=handle,
                       stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - start, int(peak.read_text().split()[-1]) / 1024


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


def sides(baseline: Path | None, bf16: bool) -> list[tuple[str, Path | None, list[str]]]:
    """``(name, PYTHONPATH, extra arguments)`` of every command timed beside the reference."""
    out = [("ours", None, [])]
    if bf16:
        out.append(("ours_bf16", None, ["--precision", "bf16"]))
    if baseline is not None:
        out.append(("baseline", baseline, []))
    return out


def same_generations(ours: Path, reference: Path) -> tuple[int, int]:
    """How many generations both TOFU_EVAL.json files hold, and how many of them are identical."""
    a, b = json.loads(ours.read_text()), json.loads(reference.read_text())
    pairs = [((a.get(m) or {}).get("value_by_index", {}).get(i, {}).get("generation"), item.get("generation"))
             for m, entry in b.items() if isinstance(entry, dict) and "ROUGE" in m
             for i, item in (entry.get("value_by_index") or {}).items()]
    return sum(x == y for x, y in pairs), len(pairs)


def run_eval_pair(model: Path, tofu: Path, work: Path, tag: str, env: dict, baseline: Path | None,
                  setting: dict, bf16: bool) -> dict:
    ref_env = dict(env, TOFU_DIR=str(tofu), RUNS_DIR=str(work / "ou"), **setting["env"])
    ref_s, ref_peak = timed(["bash", str(REFERENCE_SCRIPTS / "run_eval.sh"), tag, str(model), "null",
                             *setting["overrides"]], ref_env, work / f"{tag}.ref.log")
    row = {"reference_s": ref_s, "reference_peak_mb": ref_peak}
    for side, path, extra in sides(baseline, bf16):
        out = work / f"{side}_{tag}"
        command = GRIN + ["eval", "--model", str(model), "--benchmark", "tofu", "--data", str(tofu),
                          "--out", str(out), "--overwrite", *setting["eval"], *extra]
        row[f"{side}_s"], row[f"{side}_peak_mb"] = timed(command, dict(env, PYTHONPATH=str(path)) if path else env,
                                                         work / f"{tag}.{side}.log")
    reference = work / "ou" / "eval" / tag / "TOFU_EVAL.json"
    diff, count = per_item_difference(work / f"ours_{tag}" / "TOFU_EVAL.json", reference)
    row.update(max_item_diff=diff, items=count, same_generations=same_generations(work / f"ours_{tag}" / "TOFU_EVAL.json",
                                                                                  reference))
    if bf16:
        row["bf16_max_item_diff"] = per_item_difference(work / f"ours_bf16_{tag}" / "TOFU_EVAL.json", reference)[0]
        row["bf16_same_generations"] = same_generations(work / f"ours_bf16_{tag}" / "TOFU_EVAL.json", reference)
    if baseline is not None:
        row["identical_to_baseline"] = same_per_item(work / f"ours_{tag}" / "eval.json", work / f"baseline_{tag}" / "eval.json")
    return row


def train_runtime(trainer_log: list[dict]) -> float:
    return next(h["train_runtime"] for h in reversed(trainer_log) if "train_runtime" in h)


def run_npo_pair(model: Path, tofu: Path, work: Path, tag: str, env: dict, baseline: Path | None,
                 setting: dict, bf16: bool) -> dict:
    ref_env = dict(env, TOFU_DIR=str(tofu), RUNS_DIR=str(work / "ou"), MAX_STEPS="20", BS="4", **setting["env"])
    ref_s, ref_peak = timed(["bash", str(REFERENCE_SCRIPTS / "run_npo.sh"), tag, str(model), *setting["overrides"]],
                            ref_env, work / f"{tag}.ref.log")
    state = json.loads((work / "ou" / "unlearn" / tag / "trainer_state.json").read_text())
    row = {"reference_s": ref_s, "reference_train_s": train_runtime(state["log_history"]),
           "reference_steps": state["global_step"], "reference_peak_mb": ref_peak}
    for side, path, extra in sides(baseline, bf16):
        out = work / f"{side}_{tag}"
        command = GRIN + ["unlearn", "--model", str(model), "--benchmark", "tofu", "--data", str(tofu), "--scorer",
                          "none", "--objective", "npo", "--batch-size", "4", *setting["npo"], "--out", str(out),
                          "--overwrite", *extra]
        row[f"{side}_s"], row[f"{side}_peak_mb"] = timed(command, dict(env, PYTHONPATH=str(path)) if path else env,
                                                         work / f"{tag}.{side}.log")
        log = json.loads((out / "train_log.json").read_text())
        row[f"{side}_train_s"], row[f"{side}_steps"] = train_runtime(log), max(h.get("step", 0) for h in log)
    if baseline is not None:
        row["identical_to_baseline"] = same_weights(work / f"ours_{tag}", work / f"baseline_{tag}")
    return row


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def print_table(rows: list[tuple[str, str, list[dict]]], names: list[str], bf16: bool, baseline: bool) -> None:
    """The markdown table of ``(part, model, results of each pair)``, then the parity lines."""
    print("\n| what | model | ours | reference s | ours s | ours / reference | reference peak MB | ours peak MB |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for part, kind, results in rows:
        for key in ("",) if part == "eval" else ("train_", ""):
            what = ("TOFU evaluation, whole command" if part == "eval" else "NPO, whole command") if not key else \
                f"NPO train_runtime, {results[0]['ours_steps']} steps"
            for name in names:
                cells = [what, kind, name, spread([r[f"reference_{key}s"] for r in results]),
                         spread([r[f"{name}_{key}s"] for r in results]),
                         spread([r[f"{name}_{key}s"] / r[f"reference_{key}s"] for r in results]),
                         f"{max(r['reference_peak_mb'] for r in results):.0f}", f"{max(r[f'{name}_peak_mb'] for r in results):.0f}"]
                print("| " + " | ".join(cells) + " |")
        if part == "eval":
            same, total = results[0]["same_generations"]
            print(f"\n{kind}: max per-item |ours - reference| / max(1, |reference|) {max(r['max_item_diff'] for r in results):.1e} "
                  f"over {results[0]['items']} values; identical generations {same}/{total}")
            if bf16:
                same, total = results[0]["bf16_same_generations"]
                print(f"{kind}, bf16: max per-item difference {max(r['bf16_max_item_diff'] for r in results):.1e}; "
                      f"identical generations {same}/{total}")
        if baseline:
            print(f"{part} {kind}: bit-identical to the baseline: {all(r['identical_to_baseline'] for r in results)}")
        print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="work folder (data, models, logs; default runs/bench_reference, "
                                      "runs/bench_reference_smollm2 with --model-set smollm2)")
    parser.add_argument("--pairs", type=int, default=3, help="back-to-back pairs of runs per row (default 3)")
    parser.add_argument("--only", choices=["eval", "npo"], help="run one part only")
    parser.add_argument("--baseline-src", type=Path, help="src folder of another checkout to time beside ours")
    parser.add_argument("--model-set", choices=sorted(SETTINGS), default="tiny", help="the bench models or SmolLM2")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="bf16: also time our commands under bf16 autocast")
    parser.add_argument("--original-pad", action="store_true",
                        help="smollm2: give both sides the target as it is (pad = <|im_end|>, a token of every chat "
                             "turn): shows the reference's masking of it (docs/performance.md, parity)")
    parser.add_argument("--table-from", type=Path, help="only print the table of an earlier run's output")
    args = parser.parse_args()
    if args.table_from:
        lines = [json.loads(line) for line in args.table_from.read_text().splitlines() if line.startswith("{")]
        keys = list(dict.fromkeys((r["part"], r["model"]) for r in lines))
        rows = [(part, model, [r for r in lines if (r["part"], r["model"]) == (part, model)]) for part, model in keys]
        names = [n for n in ("ours", "ours_bf16", "baseline") if f"{n}_s" in lines[0]]
        print_table(rows, names, "ours_bf16_s" in lines[0], "baseline_s" in lines[0])
        return
    baseline = args.baseline_src.resolve() if args.baseline_src else None
    work = Path(args.out or ("runs/bench_reference" + ("_smollm2" if args.model_set == "smollm2" else ""))).resolve()
    tofu = work / "tofu"
    setting, bf16 = SETTINGS[args.model_set], args.precision == "bf16"
    if args.model_set == "smollm2":
        write_real_tofu_dir(tofu)
        if args.original_pad:
            from grin_unlearn.experiments.real_benchmark import RealBenchmarkConfig, prepare_real

            models = {"finetuned": prepare_real(RealBenchmarkConfig()).target}
        else:
            models = {"finetuned": real_target_with_free_pad(work)}
    else:
        models = build_models(work, write_tofu_dir(tofu))
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    print(f"threads: OMP_NUM_THREADS={env.get('OMP_NUM_THREADS', 'unset')}, torch {torch.__version__}; "
          f"{args.pairs} pairs; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    rows = []
    for part, kinds in (("eval", tuple(k for k in ("untrained", "finetuned") if k in models)), ("npo", ("finetuned",))):
        if args.only and args.only != part:
            continue
        for kind in kinds:
            results = []
            for pair in range(args.pairs):
                run = run_eval_pair if part == "eval" else run_npo_pair
                results.append(run(models[kind], tofu, work, f"{part}_{kind}_{pair}", env, baseline, setting, bf16))
                print(json.dumps({"part": part, "model": kind, "pair": pair, **results[-1]}), flush=True)
            rows.append((part, kind, results))
    print_table(rows, [name for name, _, _ in sides(baseline, bf16)], bf16, baseline is not None)


if __name__ == "__main__":
    main()
