"""The embedded default benchmark: a generated world plus tiny target and oracle models, cached.

Everything the demo and the tests need without the Hub: the world's splits, a byte-level BPE
tokenizer trained on them, a randomly initialised tiny Llama (the *base*), the **target** (base
fine-tuned on ``full`` + ``world_facts``) and the **oracle** (base fine-tuned on the matching retain
split + ``world_facts``, i.e. exact retraining without the forget authors). Each stage is stored
under ``<cache>/embedded-<hash of the config>/`` and reused when present, so reruns are instant.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..data.records import load_qa_split
from ..data.world import folder_corpus, write_world
from ..data.formatting import PromptFormat
from ..errors import UserInputError
from ..io_utils import atomic_write_json
from ..models import (TinyModelConfig, build_tiny_model, load_model, load_tokenizer, save_model_folder,
                      train_tokenizer)
from ..training.finetune import FinetuneConfig, finetune

logger = logging.getLogger(__name__)


# The built-in target/oracle recipe; `finetune`'s CLI defaults are these values too.
BUILTIN_FINETUNE = FinetuneConfig(epochs=20, learning_rate=3e-3)


def default_cache_dir() -> Path:
    """``$GRIN_UNLEARN_CACHE``, else ``~/.cache/grin-unlearn``."""
    return Path(os.environ.get("GRIN_UNLEARN_CACHE", Path.home() / ".cache" / "grin-unlearn")).expanduser()


@dataclass(frozen=True)
class EmbeddedConfig:
    """The embedded benchmark: world size and seed, tokenizer and model sizes, fine-tuning recipe."""

    authors: int = 40
    holdout_authors: int = 4
    world_seed: int = 0
    vocab_size: int = 2048
    model: TinyModelConfig = field(default_factory=TinyModelConfig)
    finetune: FinetuneConfig = field(default_factory=lambda: BUILTIN_FINETUNE)
    forget_split: str = "forget10"
    # The built-in byte-level BPE attaches a space to the next word, so the reference's `tofu` boundary
    # (labels after len(tok(prompt)), the prompt ending in a space) would hide each answer's first token
    # from training and end every generation prompt in a token training never showed. The built-in
    # benchmark therefore trains and evaluates in the `split` style; real TOFU models keep `tofu`.
    prompt_style: str = "split"
    # Bumped when the training recipe changes outside these fields, so cached models are rebuilt.
    recipe: int = 2

    def __post_init__(self):
        if self.forget_split not in ("forget01", "forget05", "forget10"):
            raise UserInputError(f"forget split '{self.forget_split}': expected one of forget01, forget05, forget10")

    @property
    def retain_split(self) -> str:
        return f"retain{100 - int(self.forget_split[-2:]):02d}"

    def key(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


@dataclass(frozen=True)
class EmbeddedAssets:
    root: Path
    world: Path
    base: Path
    target: Path
    oracle: Path
    config: EmbeddedConfig


def _train(base_dir: Path, records: list[dict], config: EmbeddedConfig, out: Path) -> None:
    tokenizer = load_tokenizer(str(base_dir))
    model = load_model(str(base_dir), dtype="float32", device="cpu").train()
    fmt = PromptFormat(style=config.prompt_style, max_length=config.finetune.max_length)
    finetune(model, tokenizer, records, config.finetune, out, fmt=fmt)


def builtin_base(world_dir: str | Path, model_config: TinyModelConfig, vocab_size: int, seed: int):
    """The untrained built-in model and its tokenizer for a world folder: ``(model, tokenizer)``.

    The tokenizer is a byte-level BPE trained on every split of the folder
    (:func:`~grin_unlearn.data.world.folder_corpus`), the model a tiny Llama seeded with ``seed``.
    ``make demo`` and ``grin-unlearn finetune --model builtin`` both build their base here, so the
    README's commands reproduce the demo's target.
    """
    tokenizer = train_tokenizer(folder_corpus(world_dir), vocab_size)
    return build_tiny_model(model_config, tokenizer, seed=seed), tokenizer


def train_from_base(assets: EmbeddedAssets, records: list[dict], out: Path, log=print) -> Path:
    """Fine-tune the base on ``records`` with the benchmark's recipe into ``out`` (reused when present):
    the oracle of another forget split, e.g. the tuner's validation authors."""
    if not (out / "config.json").is_file():
        log(f"fine-tuning a model on {len(records)} records into {out}")
        _train(assets.base, records, assets.config, out)
    return out


def prepare_embedded(config: EmbeddedConfig | None = None, cache_dir: str | Path | None = None,
                     log=print) -> EmbeddedAssets:
    """Build (or reuse) the world, base, target and oracle for ``config``; return their folders."""
    config = config or EmbeddedConfig()
    root = Path(cache_dir or default_cache_dir()) / f"embedded-{config.key()}"
    assets = EmbeddedAssets(root, root / "world", root / "base", root / "target", root / "oracle", config)
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(root / "config.json", asdict(config))
    if not (assets.world / "world.json").is_file():
        log(f"building the world: {config.authors} authors + {config.holdout_authors} holdout (seed {config.world_seed})")
        write_world(assets.world, config.authors, config.holdout_authors, config.world_seed, overwrite=True)
    if not (assets.base / "config.json").is_file():
        log("training the tokenizer and building the base model")
        model, tokenizer = builtin_base(assets.world, config.model, config.vocab_size, seed=config.finetune.seed)
        save_model_folder(model, tokenizer, assets.base)  # staged then renamed: never a half-written base
    facts = load_qa_split(assets.world, "world_facts")
    for name, split, out in (("target", "full", assets.target), ("oracle", config.retain_split, assets.oracle)):
        if not (out / "config.json").is_file():
            log(f"fine-tuning the {name} model on {split} + world_facts")
            _train(assets.base, load_qa_split(assets.world, split) + facts, config, out)
    return assets
