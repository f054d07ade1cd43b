"""One experiment cell: load a model → (unlearn) → evaluate against the oracle → ``eval.json``.

Shared by the demo and by sweeps. A cell whose ``run.json`` and ``eval.json`` exist is finished and is
read back instead of being run again (that is what makes sweeps resumable), but only if it was made
from the same model, data and splits: ``source.json`` records them when the cell starts, and a folder
made from another target (a rebuilt benchmark) is refused rather than reported as this one's.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import UnlearnConfig
from ..data.formatting import PromptFormat
from ..data.records import is_hub_id, load_qa_split
from ..evaluation import load_eval, save_eval
from ..evaluation import EvalConfig, evaluate, load_eval_sets
from ..errors import UserInputError
from ..io_utils import atomic_write_json
from ..models import load_model, load_tokenizer, model_device
from ..run_dir import EVAL_FILE, MODEL_DIR, is_evaluated, is_finished
from ..pipeline import unlearn
from ..precision import autocast


SOURCE_FILE = "source.json"


def cell_source(model_dir: str | Path, data: str | Path, forget: str, retain: str) -> dict:
    """What a cell unlearns: the model folder and data (resolved paths; Hub ids as given) and the splits."""
    def where(path):
        return str(path) if is_hub_id(str(path)) and not Path(path).exists() else str(Path(path).resolve())

    return {"model": where(model_dir), "data": where(data), "forget": forget, "retain": retain}


def check_source(out_dir: Path, source: dict) -> None:
    """Record ``source`` in a new cell folder; refuse a folder that holds a cell of another source.

    A folder with a run or an evaluation but no record was made by an earlier version: refused too.
    """
    path = out_dir / SOURCE_FILE
    if path.is_file():
        recorded = json.loads(path.read_text(encoding="utf-8"))
        if recorded != source:
            raise UserInputError(f"{out_dir}: holds a cell of model {recorded.get('model')} on {recorded.get('data')} "
                                 f"({recorded.get('forget')}/{recorded.get('retain')}), not of {source['model']} on "
                                 f"{source['data']} ({source['forget']}/{source['retain']}); remove the folder or "
                                 "write to another one")
        return
    if is_finished(out_dir) or is_evaluated(out_dir):
        raise UserInputError(f"{out_dir}: holds a cell with no record of its model (made by an earlier version); "
                             "remove the folder or write to another one")
    atomic_write_json(path, source)


@dataclass
class CellResult:
    out_dir: Path
    eval: dict
    seconds: float
    reused: bool


def evaluate_model_dir(model_dir: str | Path, data: str | Path, roles: dict[str, str], out_json: str | Path,
                       eval_config: EvalConfig | None = None, oracle: dict | None = None,
                       fmt: PromptFormat | None = None, loaded: tuple | None = None, precision: str = "fp32") -> dict:
    """Evaluate a saved model (cached in ``out_json``) under ``precision``; ``loaded=(model, tokenizer)``
    skips reloading it."""
    out_json = Path(out_json)
    if out_json.is_file():
        return load_eval(out_json)
    model, tokenizer = loaded or (load_model(str(model_dir)), load_tokenizer(str(model_dir)))
    fmt = fmt or PromptFormat.load(model_dir)  # the format the model was trained in, when recorded
    with autocast(precision, model_device(model)):
        result = evaluate(model, tokenizer, load_eval_sets(data, roles), roles, fmt, eval_config, oracle)
    save_eval(out_json, result)
    return result


def run_cell(model_dir: str | Path, data: str | Path, forget: str, retain: str, roles: dict[str, str],
             config: UnlearnConfig, out_dir: str | Path, eval_config: EvalConfig | None = None,
             oracle: dict | None = None, log=print, precision: str = "fp32") -> CellResult:
    """Unlearn ``model_dir`` with ``config`` into ``out_dir`` and evaluate it (skipped when finished);
    scoring, training and evaluation run under ``precision`` (:mod:`grin_unlearn.precision`)."""
    out_dir = Path(out_dir)
    start = time.perf_counter()
    check_source(out_dir, cell_source(model_dir, data, forget, retain))
    if is_evaluated(out_dir):
        return CellResult(out_dir, load_eval(out_dir / EVAL_FILE), 0.0, reused=True)
    loaded = None
    if not is_finished(out_dir):
        tokenizer = load_tokenizer(str(model_dir))
        model = load_model(str(model_dir), dtype="float32")
        fmt = (PromptFormat.load(model_dir) or PromptFormat()).with_max_length(config.train.max_length)
        with autocast(precision, model_device(model)):
            unlearn(model, tokenizer, load_qa_split(data, forget), load_qa_split(data, retain), config, out_dir,
                    fmt=fmt, resume=True, log=log)
        loaded = (model, tokenizer)  # the unlearned weights are in memory: no second load from disk
    result = evaluate_model_dir(out_dir / MODEL_DIR, data, roles, out_dir / EVAL_FILE, eval_config, oracle,
                                loaded=loaded, precision=precision)
    seconds = time.perf_counter() - start
    atomic_write_json(out_dir / "cell.json", {"seconds": seconds, "config": config.to_dict()})
    return CellResult(out_dir, result, seconds, reused=False)
