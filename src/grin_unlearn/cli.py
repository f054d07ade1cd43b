"""`grin-unlearn` command line: one sub-command per module in :mod:`grin_unlearn.commands`.

Each command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
Exit codes:

* 0 — success;
* 2 — a :class:`UserInputError` (bad path, value, file, split, output folder): one line on stderr,
  no traceback, nothing written;
* 3 — a :class:`TrainingStoppedError`: training stopped on a NaN/inf loss; the message names the step
  and the last good checkpoint, and the run folder is left unfinished (no ``run.json``);
* 130 — interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import logging
import os
import sys

from . import __version__
from .errors import TrainingStoppedError, UserInputError

COMMAND_MODULES = ("demo", "world", "pretrained", "finetune", "select", "unlearn", "eval", "attack", "compare",
                   "sweep", "report", "tune")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser; with ``only``, that command's arguments and bare entries for the others (each
    command module imports its own dependencies, so a command loads only what it uses)."""
    parser = argparse.ArgumentParser(prog="grin-unlearn", description=(
        "GRIN machine unlearning for causal LMs: gradient-ratio influence scores, top-p weight "
        "selection, noise injection and masked unlearning, with TOFU-style evaluation."))
    parser.add_argument("--version", action="version", version=f"grin-unlearn {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        if only is not None and module_name != only:
            commands.add_parser(module_name)
            continue
        try:
            module = importlib.import_module(f"grin_unlearn.commands.{module_name}")
        except ModuleNotFoundError as err:
            if err.name != f"grin_unlearn.commands.{module_name}":
                raise
            continue
        sub = commands.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    command = next((a for a in given if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMAND_MODULES else None)
    args = parser.parse_args(given)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        resolve_pretrained_names(args)
        return int(args.run(args) or 0)
    except UserInputError as err:
        print(f"grin-unlearn {args.command}: error: {err}", file=sys.stderr)
        return 2
    except TrainingStoppedError as err:
        print(f"grin-unlearn {args.command}: stopped: {err}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(f"grin-unlearn {args.command}: interrupted", file=sys.stderr)
        return 130


# Flags that take a model folder; a pretrained source's name there (`--model smollm2-135m`) stands for
# its converted folder under the cache, built on first use.
MODEL_FLAGS = ("model", "target", "oracle")


def resolve_pretrained_names(args: argparse.Namespace) -> None:
    from .models.pretrained import is_pretrained_name, resolve_model

    for flag in MODEL_FLAGS:
        value = getattr(args, flag, None)
        if isinstance(value, str) and is_pretrained_name(value):
            setattr(args, flag, resolve_model(value, getattr(args, "cache_dir", None), log=print))


def entry() -> None:
    """The ``grin-unlearn`` console script: :func:`main`, then exit without the interpreter's teardown.

    Freeing torch's and transformers' modules at exit takes over a second on the
    development machine after all work is done: every file is written atomically and closed by then,
    so the atexit handlers run (logging flushes there), stdout and stderr are flushed, and the process
    ends with ``os._exit``. A launched distributed process (``WORLD_SIZE`` > 1) exits normally.
    """
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.exit(code)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
