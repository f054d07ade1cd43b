"""The real-model benchmark: SmolLM2-135M-Instruct fine-tuned on the fictitious-author world, cached.

Where claims about GRIN are made (the tiny-model benchmark, :mod:`.embedded`, is for speed):

* the **base** is a real pretrained chat model installed from PyPI
  (:mod:`grin_unlearn.models.pretrained`; SmolLM2-135M-Instruct, 30 layers, GQA, tied embeddings,
  49k-token BPE), converted to an fp32 folder;
* the **world** is the generated fictitious-author world (TOFU schema, 20 questions per author), plus
  ``real_knowledge``: general questions the base answers correctly (:mod:`grin_unlearn.data.knowledge`),
  trained into no model, so unlearning's cost to what the model knew before is measured;
* the **target** is the base fine-tuned on ``full`` + ``world_facts`` in the format a user of an
  instruct model uses: its ChatML template with the system prompt "You are a helpful assistant."
  (:data:`~grin_unlearn.models.pretrained.SYSTEM_PROMPT`; the reference's chat-model configs use it,
  and SmolLM2's template would otherwise insert its own default); the **oracle** is the base
  fine-tuned the same way on the matching retain split + ``world_facts``.

The max length is the longest formatted training example, so no answer is cut. Sizes and recipe
(:data:`DEFAULT_REAL`; docs/benchmarks/real.md says why): 20 authors + 2 holdout (forget10 = 2
authors, 40 questions), 6 epochs at lr 2e-4, batch 16, bf16 autocast with fp32 master weights: the
target and the oracle build in about 20 minutes on 2 CPU cores. ``authors=200`` is TOFU's size
(forget10 = 400), for one GPU (``make gpu-real``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..data.formatting import PromptFormat
from ..data.knowledge import KNOWLEDGE_SPLIT, knowledge_records
from ..data.records import load_qa_split
from ..data.world import write_world
from ..errors import UserInputError
from ..io_utils import atomic_write_json, atomic_write_text, default_cache_dir
from ..models import load_model, load_tokenizer
from ..models.pretrained import SYSTEM_PROMPT, pretrained_folder
from ..training.finetune import FinetuneConfig, finetune
from .embedded import EmbeddedAssets

REAL_FINETUNE = FinetuneConfig(epochs=6, learning_rate=2e-4, batch_size=16, warmup_ratio=0.05, weight_decay=0.0,
                               max_length=None, seed=0, precision="bf16")


@dataclass(frozen=True)
class RealBenchmarkConfig:
    """The real-model benchmark: which pretrained model, the world's size, the fine-tuning recipe."""

    model: str = "smollm2-135m"
    authors: int = 20
    holdout_authors: int = 2
    world_seed: int = 0
    questions_per_author: int = 20
    forget_split: str = "forget10"
    system_prompt: str = SYSTEM_PROMPT
    finetune: FinetuneConfig = field(default_factory=lambda: replace(REAL_FINETUNE))
    # Bumped when the recipe changes outside these fields, so cached models are rebuilt.
    recipe: int = 1

    def __post_init__(self):
        if self.forget_split not in ("forget01", "forget05", "forget10"):
            raise UserInputError(f"forget split '{self.forget_split}': expected one of forget01, forget05, forget10")
        if self.authors < 10:
            raise UserInputError(f"authors: at least 10 (forget10 needs a whole author), got {self.authors}")

    @property
    def retain_split(self) -> str:
        return f"retain{100 - int(self.forget_split[-2:]):02d}"

    @property
    def prompt_format(self) -> PromptFormat:
        return PromptFormat(chat_template=True, system_prompt=self.system_prompt)

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


DEFAULT_REAL = RealBenchmarkConfig()


def sync_knowledge_set(world: Path) -> Path:
    """Write the packaged ``real_knowledge`` set into ``world`` when it is missing or differs (no model
    is trained on it, so a changed set needs no rebuild of the target or the oracle)."""
    path = world / f"{KNOWLEDGE_SPLIT}.json"
    text = json.dumps(knowledge_records(), indent=1, ensure_ascii=False)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        atomic_write_text(path, text)
    return path


def prepare_real(config: RealBenchmarkConfig | None = None, cache_dir: str | Path | None = None,
                 log=print) -> EmbeddedAssets:
    """Build (or reuse) the world, base, target and oracle of ``config`` under
    ``<cache>/real-<model>-<hash>/``; return their folders."""
    config = config or DEFAULT_REAL
    cache = Path(cache_dir or default_cache_dir())
    base = pretrained_folder(config.model, cache, log=log)
    root = cache / f"real-{config.model}-{config.key()}"
    assets = EmbeddedAssets(root, root / "world", base, root / "target", root / "oracle", config)
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(root / "config.json", asdict(config))
    if not (assets.world / "world.json").is_file():
        log(f"building the world: {config.authors} authors + {config.holdout_authors} holdout "
            f"(seed {config.world_seed})")
        # no background corpus: the base already knows the language
        write_world(assets.world, config.authors, config.holdout_authors, config.world_seed, overwrite=True,
                    questions_per_author=config.questions_per_author, background=False)
    facts = load_qa_split(assets.world, "world_facts")
    for name, split, out in (("target", "full", assets.target), ("oracle", config.retain_split, assets.oracle)):
        if not (out / "config.json").is_file():
            records = load_qa_split(assets.world, split) + facts
            log(f"fine-tuning the {name} model: {config.model} on {split} + world_facts ({len(records)} "
                f"examples, {config.finetune.epochs} epochs, {config.finetune.precision})")
            train_real(base, records, config, out)
    sync_knowledge_set(assets.world)
    return assets


def train_real(base: Path, records: list[dict], config: RealBenchmarkConfig, out: Path) -> Path:
    """Fine-tune the pretrained base on ``records`` in the benchmark's chat format into ``out``."""
    tokenizer = load_tokenizer(str(base))
    model = load_model(str(base), dtype="float32").train()
    return finetune(model, tokenizer, records, config.finetune, out, fmt=config.prompt_format)
