"""Loading any Hugging Face causal LM, and building the tiny built-in model and tokenizer.

The byte-level BPE here, trained with the `tokenizers` library on the world's text, is the tests'
micro tokenizer and the earlier benchmark's (``EmbeddedConfig(tokenizer="world-bpe")``); the embedded
benchmark's own is :mod:`grin_unlearn.subword`. The built-in model is a small Llama-architecture ``transformers`` model built from a config. Both are
saved with ``save_pretrained`` and load with ``AutoTokenizer`` / ``AutoModelForCausalLM`` like any
Hub model. ``trust_remote_code`` stays off unless the caller asks for it.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import UserInputError
from ..io_utils import atomic_write_json, replace_dir

logger = logging.getLogger(__name__)

# A transformer block index in a parameter name: "model.layers.3.mlp...", "transformer.h.0.attn...".
BLOCK_PATTERN = re.compile(r"(?:^|\.)(?:layers|h|blocks|block|layer)\.(\d+)\.")

SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}


@dataclass(frozen=True)
class TinyModelConfig:
    """Sizes of the built-in Llama model (defaults: ~1.6M parameters, memorises the demo world on a CPU)."""

    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    max_position_embeddings: int = 128
    vocab_size: int = 2048

    def __post_init__(self):
        if self.hidden_size % self.num_attention_heads:
            raise UserInputError(f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads ({self.num_attention_heads})")
        for name in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"):
            if getattr(self, name) <= 0:
                raise UserInputError(f"{name} must be positive, got {getattr(self, name)}")


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE ``PreTrainedTokenizerFast`` trained on ``texts`` (deterministic for fixed input)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS.values()),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator(texts, trainer=trainer)
    # A decoder-only model takes no token_type_ids; saying so keeps 4.x from returning them.
    return PreTrainedTokenizerFast(tokenizer_object=core, **SPECIAL_TOKENS, padding_side="right",
                                   model_input_names=["input_ids", "attention_mask"])


def build_tiny_model(config: TinyModelConfig, tokenizer, seed: int):
    """A randomly initialised ``LlamaForCausalLM`` sized by ``config`` (seeded)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    llama = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers, num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_attention_heads, max_position_embeddings=config.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )
    return LlamaForCausalLM(llama)


def _check_model_source(name_or_path: str) -> None:
    path = Path(name_or_path).expanduser()
    looks_local = name_or_path.startswith((".", "/", "~")) or path.exists() or name_or_path.count("/") > 1
    if looks_local and not (path / "config.json").is_file():
        raise UserInputError(f"--model: {name_or_path} is not a model folder (expected config.json from save_pretrained, or a Hub id)")


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False):
    """The tokenizer of a local folder or Hub id, with a pad token (EOS if it has none)."""
    from transformers import AutoTokenizer

    _check_model_source(str(name_or_path))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path), trust_remote_code=trust_remote_code)
    except OSError as err:
        raise UserInputError(f"--model {name_or_path}: could not load a tokenizer ({str(err)[:300]})") from None
    if tokenizer.pad_token_id is None:
        # Padding is masked out everywhere, so reusing EOS is safe (the usual practice for Llama-family models).
        tokenizer.pad_token = tokenizer.eos_token
        logger.info("tokenizer of %s has no pad token; using EOS for padding", name_or_path)
    return tokenizer


def default_device() -> str:
    """Where :func:`load_model` puts a model unless told: CUDA if present, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(name_or_path: str, dtype: str | torch.dtype = "auto", device: str | torch.device | None = None,
               trust_remote_code: bool = False):
    """A causal LM from a local folder or Hub id, in eval mode, on ``device`` (default: CUDA if present)."""
    from transformers import AutoModelForCausalLM

    _check_model_source(str(name_or_path))
    resolved_dtype = getattr(torch, dtype) if isinstance(dtype, str) and dtype != "auto" else dtype
    if resolved_dtype == "auto":
        resolved_dtype = torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    try:
        model = AutoModelForCausalLM.from_pretrained(str(name_or_path), trust_remote_code=trust_remote_code,
                                                     **{_dtype_keyword(): resolved_dtype})
    except OSError as err:
        raise UserInputError(f"--model {name_or_path}: could not load a causal LM ({str(err)[:300]})") from None
    return model.to(device or default_device()).eval()


def _dtype_keyword() -> str:
    """``from_pretrained``'s dtype keyword: ``dtype`` from transformers 4.56 on, ``torch_dtype`` before
    (4.45 ignores an unknown ``dtype`` and loads fp32 silently; 5.x warns about ``torch_dtype``)."""
    import transformers
    from packaging.version import Version

    return "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"


# transformers 5 saves tokenizers built from a `tokenizers` object as this class, unknown to 4.x;
# PreTrainedTokenizerFast is the name both ends of our range load as the same fast tokenizer.
_PORTABLE_TOKENIZER_CLASSES = {"TokenizersBackend": "PreTrainedTokenizerFast"}


def save_model_folder(model, tokenizer, out_dir: str | Path, extra_json: dict[str, object] | None = None,
                      state_dict: dict | None = None) -> Path:
    """``save_pretrained`` of model and tokenizer as ``out_dir``, atomically, loadable by transformers 4.45–5.x.

    Written to a temporary sibling (plus ``extra_json``: file name → JSON object), then renamed over
    ``out_dir``; a crash leaves the old folder or none, never a half-written one. What transformers 5
    writes and 4.45 would misread is written both ways: the tokenizer class name becomes one every
    supported version knows (``_PORTABLE_TOKENIZER_CLASSES``), the chat template goes into
    ``tokenizer_config.json`` as well as ``chat_template.jinja``, and the RoPE base into ``rope_theta``
    as well as ``rope_parameters`` (4.45 reads only ``rope_theta`` and would silently use 10,000).
    ``state_dict`` replaces the model's own (the gathered full weights of a sharded model).
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        model.save_pretrained(staging, state_dict=state_dict)
        tokenizer.save_pretrained(staging)
        _make_tokenizer_config_portable(staging / "tokenizer_config.json", getattr(tokenizer, "chat_template", None))
        _make_model_config_portable(staging / "config.json")
        for name, obj in (extra_json or {}).items():
            atomic_write_json(staging / name, obj)
        replace_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def _make_tokenizer_config_portable(path: Path, chat_template: str | None = None) -> None:
    if not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    changed = dict(config)
    portable = _PORTABLE_TOKENIZER_CLASSES.get(config.get("tokenizer_class"))
    if portable is not None:
        changed["tokenizer_class"] = portable
        changed.pop("backend", None)
    if isinstance(chat_template, str) and "chat_template" not in config:
        changed["chat_template"] = chat_template  # 4.45 does not read chat_template.jinja
    if changed != config:
        atomic_write_json(path, changed)


def _make_model_config_portable(path: Path) -> None:
    if not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    rope = config.get("rope_parameters")
    if isinstance(rope, dict) and "rope_theta" in rope and "rope_theta" not in config:
        config["rope_theta"] = rope["rope_theta"]
        atomic_write_json(path, config)


def pad_token_id(tokenizer) -> int:
    """The id that pads batches: the tokenizer's pad token, else its EOS token, else 0."""
    for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    return 0


def text_config(model):
    """The config of a model's language part (``get_text_config()`` of a multimodal config; else its config)."""
    config = getattr(model, "config", None)
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def model_device(model) -> torch.device:
    """Where a model's inputs go: ``model.device`` when it has one, else its first parameter's device."""
    device = getattr(model, "device", None)
    return torch.device(device) if device is not None else next(model.parameters()).device
