"""Atomic writes: every artifact appears whole or not at all; and safetensors bytes in one fixed order.

A file is written to a temporary name in the same folder, flushed, then renamed over the target
with ``os.replace`` (atomic on POSIX). A folder is built as a temporary sibling and renamed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from .errors import UserInputError


def canonical_safetensors(data: bytes) -> bytes:
    """A safetensors file's bytes with its JSON header in one fixed order: ``__metadata__`` first, its
    entries sorted, then the tensors sorted by name.

    safetensors (0.8) writes the metadata entries in the order of a per-process hash map, so the same
    tensors and metadata saved by two runs differ in their bytes. Only the header is rewritten: the
    tensors' ``data_offsets`` count from the end of the header, and the header is padded with spaces to
    a multiple of 8 bytes (as safetensors pads it) so the data stays 8-byte aligned.
    """
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    metadata = header.pop("__metadata__", None)
    ordered = {} if metadata is None else {"__metadata__": dict(sorted(metadata.items()))}
    ordered.update(sorted(header.items()))
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + length:]


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def atomic_write_dir(out_dir: str | Path, files: dict[str, str | bytes], overwrite: bool = False) -> Path:
    """Write ``files`` (relative name → content) as the folder ``out_dir``, all or nothing."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise UserInputError(f"--out: {out_dir} already exists and is not empty (pass --overwrite to replace it)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for name, content in files.items():
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def replace_dir(tmp: Path, target: Path) -> None:
    """Move the finished folder ``tmp`` to ``target``, replacing an old one only after success."""
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


def default_cache_dir() -> Path:
    """``$GRIN_UNLEARN_CACHE``, else ``~/.cache/grin-unlearn``: built models and worlds, reused across runs."""
    return Path(os.environ.get("GRIN_UNLEARN_CACHE", Path.home() / ".cache" / "grin-unlearn")).expanduser()
