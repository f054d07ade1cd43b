"""One experiment cell: load a model → (unlearn) → evaluate against the oracle → ``eval.json``.

Shared by the demo and by sweeps. A cell whose ``run.json`` and ``eval.json`` exist is finished and is
read back instead of being run again (that is what makes sweeps resumable).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..config import UnlearnConfig
from ..data.formatting import PromptFormat
from ..data.records import load_qa_split
from ..evaluation import load_eval, save_eval
from ..evaluation import EvalConfig, evaluate, load_eval_sets
from ..io_utils import atomic_write_json
from ..models import load_model, load_tokenizer
from ..run_dir import EVAL_FILE, MODEL_DIR, is_evaluated, is_finished
from ..pipeline import unlearn


@dataclass
class CellResult:
    out_dir: Path
    eval: dict
    seconds: float
    reused: bool


def evaluate_model_dir(model_dir: str | Path, data: str | Path, roles: dict[str, str], out_json: str | Path,
                       eval_config: EvalConfig | None = None, oracle: dict | None = None,
                       fmt: PromptFormat | None = None, loaded: tuple | None = None) -> dict:
    """Evaluate a saved model (cached in ``out_json``); ``loaded=(model, tokenizer)`` skips reloading it."""
    out_json = Path(out_json)
    if out_json.is_file():
        return load_eval(out_json)
    model, tokenizer = loaded or (load_model(str(model_dir)), load_tokenizer(str(model_dir)))
    fmt = fmt or PromptFormat.load(model_dir)  # the format the model was trained in, when recorded
    result = evaluate(model, tokenizer, load_eval_sets(data, roles), roles, fmt, eval_config, oracle)
    save_eval(out_json, result)
    return result


def run_cell(model_dir: str | Path, data: str | Path, forget: str, retain: str, roles: dict[str, str],
             config: UnlearnConfig, out_dir: str | Path, eval_config: EvalConfig | None = None,
             oracle: dict | None = None, log=print) -> CellResult:
    """Unlearn ``model_dir`` with ``config`` into ``out_dir`` and evaluate it (skipped when finished)."""
    out_dir = Path(out_dir)
    start = time.perf_counter()
    if is_evaluated(out_dir):
        return CellResult(out_dir, load_eval(out_dir / EVAL_FILE), 0.0, reused=True)
    loaded = None
    if not is_finished(out_dir):
        tokenizer = load_tokenizer(str(model_dir))
        model = load_model(str(model_dir), dtype="float32")
        fmt = (PromptFormat.load(model_dir) or PromptFormat()).with_max_length(config.train.max_length)
        unlearn(model, tokenizer, load_qa_split(data, forget), load_qa_split(data, retain), config, out_dir,
                fmt=fmt, resume=True, log=log)
        loaded = (model, tokenizer)  # the unlearned weights are in memory: no second load from disk
    result = evaluate_model_dir(out_dir / MODEL_DIR, data, roles, out_dir / EVAL_FILE, eval_config, oracle,
                                loaded=loaded)
    seconds = time.perf_counter() - start
    atomic_write_json(out_dir / "cell.json", {"seconds": seconds, "config": config.to_dict()})
    return CellResult(out_dir, result, seconds, reused=False)
