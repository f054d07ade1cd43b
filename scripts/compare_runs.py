"""Are two run folders the same result? For a refactor that must not change behaviour.

    python scripts/compare_runs.py OLD NEW      # e.g. two `grin-unlearn demo` folders (runs/demo)

Every ``*.safetensors`` file under OLD (masks, model weights) is compared byte for byte with its twin
under NEW, and, when the bytes differ, tensor by tensor; every ``eval.json`` and ``attack_*.json`` is
compared as JSON, values and key order, without its timings (``timing``, ``seconds``). Prints one line
per file and exits 1 when any file differs or is missing under NEW, 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

TIMING_KEYS = ("timing", "seconds")


def without_timings(value):
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def compare_tensors(old: Path, new: Path) -> str:
    if old.read_bytes() == new.read_bytes():
        return "same bytes"
    a, b = load_file(str(old)), load_file(str(new))
    if list(a) == list(b) and all(torch.equal(a[name], b[name]) for name in a):
        return "DIFFERENT bytes, same tensors"
    return "DIFFERENT tensors"


def compare_json(old: Path, new: Path) -> str:
    a, b = (without_timings(json.loads(p.read_text(encoding="utf-8"))) for p in (old, new))
    if json.dumps(a) == json.dumps(b):
        return "same (timings aside)"
    return "same values, DIFFERENT key order" if a == b else "DIFFERENT values"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    args = parser.parse_args(argv)
    for folder in (args.old, args.new):
        if not folder.is_dir():
            print(f"{folder}: not a folder (expected a run folder such as runs/demo)", file=sys.stderr)
            return 2
    files = sorted([*args.old.rglob("*.safetensors"), *args.old.rglob("eval.json"), *args.old.rglob("attack_*.json")])
    if not files:
        print(f"{args.old}: no *.safetensors, eval.json or attack_*.json files to compare", file=sys.stderr)
        return 2
    differs = False
    for old in files:
        relative = old.relative_to(args.old)
        new = args.new / relative
        if not new.is_file():
            verdict = "MISSING under NEW"
        else:
            verdict = compare_tensors(old, new) if old.suffix == ".safetensors" else compare_json(old, new)
        differs |= verdict.startswith(("DIFFERENT", "same values, DIFFERENT", "MISSING"))
        print(f"{relative}: {verdict}")
    return 1 if differs else 0


if __name__ == "__main__":
    sys.exit(main())
