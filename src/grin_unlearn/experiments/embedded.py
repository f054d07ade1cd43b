"""The embedded default benchmark: a generated world plus tiny target and oracle models, cached.

Everything the demo and the tests need without the Hub:

* the world's splits (20 questions per author, as TOFU) and its background corpus
  (:mod:`grin_unlearn.data.background`);
* the tokenizer: Mistral-7B v0.1's SentencePiece segmentation compacted to the pieces the world uses
  (:mod:`grin_unlearn.subword`), so names split into subwords that other words share;
* the **base**: a tiny Llama pretrained on the background corpus, which knows the world's vocabulary
  in other contexts and no fact about its authors, as a pretrained LLM knows its language before TOFU;
* the **target** (base fine-tuned on ``full`` + ``world_facts``) and the **oracle** (base fine-tuned
  on the matching retain split + ``world_facts``, i.e. exact retraining without the forget authors).

Each stage is stored under ``<cache>/embedded-<hash of the config>/`` and reused when present, so
reruns are instant. ``tokenizer="world-bpe"`` with ``pretrain=None`` gives the earlier benchmark (a
byte-level BPE trained on the world, a randomly initialised base).
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..data.attributes import TOFU_QUESTIONS_PER_AUTHOR
from ..data.records import available_splits, load_qa_split, load_split
from ..data.world import folder_corpus, write_world
from ..data.formatting import PromptFormat
from ..errors import UserInputError
from ..io_utils import atomic_write_json, default_cache_dir
from ..models import (TinyModelConfig, build_tiny_model, load_model, load_tokenizer, save_model_folder,
                      train_tokenizer)
from ..subword import compact_subword_tokenizer
from ..training.finetune import FinetuneConfig, finetune

logger = logging.getLogger(__name__)


# The built-in target/oracle recipe; `finetune`'s CLI defaults are these values too.
BUILTIN_FINETUNE = FinetuneConfig(epochs=20, learning_rate=3e-3, max_length=64)
# The built-in base's pretraining on the background corpus (language modelling on every token).
BUILTIN_PRETRAIN = FinetuneConfig(epochs=4, learning_rate=3e-3, max_length=64)
TOKENIZERS = ("subword", "world-bpe")


@dataclass(frozen=True)
class EmbeddedConfig:
    """The embedded benchmark: world size and seed, tokenizer and model sizes, fine-tuning recipe."""

    # The demo's size (forget10 = 2 authors, 40 questions; `make demo` cold in minutes on 2 cores);
    # TOFU's is authors=200, holdout_authors=20 (configs/tofu/, docs/results.md).
    authors: int = 20
    holdout_authors: int = 2
    world_seed: int = 0
    questions_per_author: int = TOFU_QUESTIONS_PER_AUTHOR
    tokenizer: str = "subword"
    vocab_size: int = 2048  # of the world-bpe tokenizer only; the subword one keeps what the world uses
    model: TinyModelConfig = field(default_factory=TinyModelConfig)
    pretrain: FinetuneConfig | None = field(default_factory=lambda: BUILTIN_PRETRAIN)
    finetune: FinetuneConfig = field(default_factory=lambda: BUILTIN_FINETUNE)
    forget_split: str = "forget10"
    # The built-in tokenizers (subword and byte-level BPE) attach a space to the next word, so the
    # reference's `tofu` boundary (labels after len(tok(prompt)), the prompt ending in a space) would hide each answer's first token
    # from training and end every generation prompt in a token training never showed. The built-in
    # benchmark therefore trains and evaluates in the `split` style; real TOFU models keep `tofu`.
    prompt_style: str = "split"
    # Bumped when the training recipe changes outside these fields, so cached models are rebuilt.
    recipe: int = 3

    def __post_init__(self):
        if self.tokenizer not in TOKENIZERS:
            raise UserInputError(f"tokenizer '{self.tokenizer}': expected one of {', '.join(TOKENIZERS)}")
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
    fmt = PromptFormat(style=config.prompt_style)
    finetune(model, tokenizer, records, config.finetune, out, fmt=fmt)


def builtin_tokenizer(world_dir: str | Path, kind: str = "subword", vocab_size: int = 2048,
                      fmt: PromptFormat | None = None):
    """The built-in tokenizer of a world folder, from every string of it
    (:func:`~grin_unlearn.data.world.folder_corpus`) and the prompt template.

    ``subword``: Mistral-7B v0.1's segmentation compacted to those strings
    (:func:`~grin_unlearn.subword.compact_subword_tokenizer`); ``world-bpe``: a byte-level BPE of
    ``vocab_size`` ids trained on them.
    """
    corpus = folder_corpus(world_dir)
    if kind == "world-bpe":
        return train_tokenizer(corpus, vocab_size)
    fmt = fmt or PromptFormat()
    return compact_subword_tokenizer(corpus + [fmt.template.replace("{question}", "Why?") + " Because."])


def builtin_base(world_dir: str | Path, model_config: TinyModelConfig, seed: int, kind: str = "subword",
                 vocab_size: int = 2048, pretrain: FinetuneConfig | None = BUILTIN_PRETRAIN, out: Path | None = None):
    """The built-in base model and its tokenizer for a world folder: ``(model, tokenizer)``.

    A tiny Llama seeded with ``seed`` over :func:`builtin_tokenizer`'s ids, pretrained with ``pretrain``
    on the folder's ``background`` split when both exist (saved to ``out`` when given). ``make demo``
    and ``grin-unlearn finetune --model builtin`` both build their base here, so the README's commands
    reproduce the demo's target.
    """
    tokenizer = builtin_tokenizer(world_dir, kind, vocab_size)
    model = build_tiny_model(model_config, tokenizer, seed=seed)
    if pretrain is not None and "background" in available_splits(Path(world_dir)):
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(out) if out is not None else Path(scratch) / "base"
            finetune(model.train(), tokenizer, load_split(world_dir, "background"), pretrain, folder,
                     fmt=PromptFormat())
            model = load_model(str(folder), dtype="float32", device="cpu")
    elif out is not None:
        save_model_folder(model, tokenizer, out)
    return model, tokenizer


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
        write_world(assets.world, config.authors, config.holdout_authors, config.world_seed, overwrite=True,
                    questions_per_author=config.questions_per_author, background=config.pretrain is not None)
    if not (assets.base / "config.json").is_file():
        log("building the tokenizer and the base model" + (" (pretraining on the background corpus)"
                                                          if config.pretrain is not None else ""))
        # staged then renamed: never a half-written base
        builtin_base(assets.world, config.model, config.finetune.seed, config.tokenizer, config.vocab_size,
                     config.pretrain, out=assets.base)
    facts = load_qa_split(assets.world, "world_facts")
    for name, split, out in (("target", "full", assets.target), ("oracle", config.retain_split, assets.oracle)):
        if not (out / "config.json").is_file():
            log(f"fine-tuning the {name} model on {split} + world_facts")
            _train(assets.base, load_qa_split(assets.world, split) + facts, config, out)
    return assets
