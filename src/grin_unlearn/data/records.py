"""Reading TOFU-schema records from local files or the Hugging Face Hub.

A *data source* is either a local folder holding one ``<split>.json`` / ``<split>.jsonl`` file per
split (the generated world, or TOFU's files on disk), or a Hub dataset id such as ``locuslab/TOFU``
whose configs are the split names (read through :func:`datasets.load_dataset`).

Record kinds (see DESIGN.md): question/answer records need ``question`` and ``answer`` (str);
multiple-choice records have ``question``, ``choices`` (list) and an int ``answer``; raw text records
have ``text``. Malformed input raises :class:`UserInputError` naming the file and line.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserInputError

SUFFIXES = (".json", ".jsonl")


def _parse_json_lines(path: Path, text: str) -> list[dict]:
    # Lines end at "\n" only (the JSON Lines rule): str.splitlines() would also split on U+2028 and
    # other separators that JSON allows unescaped inside a string.
    records = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as err:  # JSONDecodeError, over-long ints, deep nesting
            raise UserInputError(f"{path}: line {number} is not valid JSON ({getattr(err, 'msg', err)})") from None
        if not isinstance(record, dict):
            raise UserInputError(f"{path}: line {number} is a JSON {type(record).__name__}, expected a JSON object")
        records.append(record)
    return records


def read_records_file(path: str | Path) -> list[dict]:
    """Records of one JSON array file or JSON-lines file (detected from the content)."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such file (expected a .json or .jsonl file of records)")
    try:
        # A leading BOM (Windows editors) is not content; newline="" keeps a lone "\r" inside a line, so
        # line numbers count "\n" only, as JSON Lines does (a "\r\n" ending is JSON whitespace).
        with path.open(encoding="utf-8-sig", newline="") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as err:
        raise UserInputError(f"{path}: cannot be read as UTF-8 text ({err})") from None
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as err:
            raise UserInputError(f"{path}: line {err.lineno} is not valid JSON ({err.msg})") from None
        except (ValueError, RecursionError) as err:
            raise UserInputError(f"{path}: not valid JSON ({err})") from None
    else:
        records = _parse_json_lines(path, text)
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise UserInputError(f"{path}: record {index} is a {type(record).__name__}, expected a JSON object")
    return records


def validate_qa_records(records: list[dict], source: str) -> list[dict]:
    """Check the fields every question/answer record needs; return the records unchanged."""
    if not records:
        raise UserInputError(f"{source}: the split is empty (expected at least one record)")
    for index, record in enumerate(records):
        for key in ("question", "answer"):
            if not isinstance(record.get(key), str) or not record[key].strip():
                raise UserInputError(f"{source}: record {index} has no non-empty string field '{key}'")
        perturbed = record.get("perturbed_answer")
        if perturbed is not None and (not isinstance(perturbed, list) or not all(isinstance(p, str) for p in perturbed)):
            raise UserInputError(f"{source}: record {index} field 'perturbed_answer' must be a list of strings")
        keywords = record.get("keywords")
        if keywords is not None and (not isinstance(keywords, list) or not all(isinstance(k, str) for k in keywords)):
            raise UserInputError(f"{source}: record {index} field 'keywords' must be a list of strings")
    return records


def available_splits(folder: str | Path) -> list[str]:
    folder = Path(folder)
    return sorted({p.stem for p in folder.iterdir() if p.suffix in SUFFIXES and p.stem != "world"})


def is_hub_id(data: str) -> bool:
    """``owner/name`` that is not an existing local path."""
    return "/" in data and not Path(data).exists() and not data.startswith((".", "/", "~")) and data.count("/") == 1


def load_split(data: str | Path, split: str) -> list[dict]:
    """Records of ``split`` from a local folder or a Hub dataset id (no validation of the kind)."""
    data = str(data)
    if is_hub_id(data):
        from .hub import load_hub_split
        return load_hub_split(data, split)
    folder = Path(data).expanduser()
    if not folder.is_dir():
        raise UserInputError(f"--data: {folder} is not a folder (expected a folder of <split>.json files or a Hub id like locuslab/TOFU)")
    for suffix in SUFFIXES:
        candidate = folder / f"{split}{suffix}"
        if candidate.is_file():
            return read_records_file(candidate)
    valid = ", ".join(available_splits(folder)) or "none"
    raise UserInputError(f"split '{split}': not found in {folder} (available: {valid})")


def load_qa_split(data: str | Path, split: str) -> list[dict]:
    """A question/answer split, validated (non-empty, required fields present)."""
    return validate_qa_records(load_split(data, split), f"{data}:{split}")
