"""A Llama GGUF file as a ``transformers`` model and tokenizer, read with the ``gguf`` package alone.

transformers can read GGUF itself (``from_pretrained(folder, gguf_file=…)``), but not across the
versions we support: 4.45 leaves a tied ``lm_head`` randomly initialised and its tokenizer prepends
``<|im_start|>`` as BOS. This reader does not depend on the transformers version, so the newest and
the floor version build the same model; a test checks it against transformers 5's own GGUF loader.

What it undoes (facts of llama.cpp's ``convert_hf_to_gguf.py``, GGUF spec v3):

* **Shapes.** GGUF lists dimensions fastest first, so a tensor of GGUF shape ``(in, out)`` is the
  row-major ``(out, in)`` matrix of PyTorch; :func:`gguf.quants.dequantize` returns that matrix in
  float32 (Q4_1: ``w = d·q + m`` per block of 32; Q8_0: ``w = d·q``).
* **Rotary layout.** The converter permutes the rows of ``q_proj`` and ``k_proj`` from the Hugging
  Face "rotate half" layout to interleaved pairs: rows of each head ``(2, d/2)`` become ``(d/2, 2)``.
  :func:`unpermute_rotary_rows` swaps them back.
* **Tied embeddings.** A file without ``output.weight`` ties the LM head to ``token_embd``.
* **Tokenizer.** ``tokenizer.ggml.model = gpt2``: a byte-level BPE of ``tokens`` and ``merges``;
  tokens of type 3 (control) are special tokens. The ``smollm`` pre-tokenizer splits digits one by one
  before the byte-level split. No BOS is added when ``add_bos_token`` is false.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UserInputError

# GGUF tensor names of one Llama block → Hugging Face's, "{i}" the block index.
BLOCK_NAMES = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
}
TOP_NAMES = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
             "output.weight": "lm_head.weight"}
# llama.cpp's pre-tokenizer names whose split we know: digits one by one, then the byte-level regex.
DIGIT_SPLITTING_PRE = ("smollm", "starcoder", "refact")
BYTE_LEVEL_PRE = ("gpt-2", "default", *DIGIT_SPLITTING_PRE)
CONTROL_TOKEN_TYPE = 3


@dataclass
class GGUFLlama:
    """What a Llama GGUF file holds, in Hugging Face terms: config keywords, fp32 state dict,
    tokenizer pieces, chat template and the per-tensor quantisation types."""

    config: dict
    state_dict: dict[str, torch.Tensor]
    tokens: list[str]
    merges: list[str]
    special_ids: list[int]
    unk_token_id: int | None
    pre_tokenizer: str
    chat_template: str | None
    tensor_types: dict[str, str]


def unpermute_rotary_rows(weight: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's rotary row permutation of a ``(heads·d, in)`` projection: per head, rows in
    the order ``(d/2, 2)`` go back to ``(2, d/2)``."""
    head_dim = weight.shape[0] // heads
    return (weight.reshape(heads, head_dim // 2, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape))


def _field(reader, key: str, default=None):
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def read_gguf_llama(path: str | Path) -> GGUFLlama:
    """Read a Llama-architecture GGUF file (any quantisation ``gguf`` can dequantize) into fp32."""
    try:
        import gguf
    except ModuleNotFoundError:
        raise UserInputError("reading a GGUF file needs the 'gguf' package: pip install gguf") from None
    path = Path(path)
    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, OSError, KeyError, IndexError) as err:
        raise UserInputError(f"{path}: not a readable GGUF file ({str(err)[:200]})") from None
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise UserInputError(f"{path}: expected a GGUF of architecture 'llama', got {arch!r}")
    if _field(reader, "tokenizer.ggml.model") != "gpt2":
        raise UserInputError(f"{path}: expected a byte-level BPE tokenizer (tokenizer.ggml.model 'gpt2'), "
                             f"got {_field(reader, 'tokenizer.ggml.model')!r}")
    pre = _field(reader, "tokenizer.ggml.pre", "default")
    if pre not in BYTE_LEVEL_PRE:
        raise UserInputError(f"{path}: pre-tokenizer {pre!r} is not one this reader knows ({', '.join(BYTE_LEVEL_PRE)})")
    heads, kv_heads = int(_field(reader, "llama.attention.head_count")), int(_field(reader, "llama.attention.head_count_kv"))
    tokens = list(_field(reader, "tokenizer.ggml.tokens"))
    names = {t.name for t in reader.tensors}
    config = {
        "vocab_size": int(_field(reader, "llama.vocab_size", len(tokens))),
        "hidden_size": int(_field(reader, "llama.embedding_length")),
        "intermediate_size": int(_field(reader, "llama.feed_forward_length")),
        "num_hidden_layers": int(_field(reader, "llama.block_count")),
        "num_attention_heads": heads, "num_key_value_heads": kv_heads,
        "max_position_embeddings": int(_field(reader, "llama.context_length")),
        "rms_norm_eps": float(_field(reader, "llama.attention.layer_norm_rms_epsilon")),
        "rope_theta": float(_field(reader, "llama.rope.freq_base", 10000.0)),
        "tie_word_embeddings": "output.weight" not in names,
        "bos_token_id": _optional_int(_field(reader, "tokenizer.ggml.bos_token_id")),
        "eos_token_id": _optional_int(_field(reader, "tokenizer.ggml.eos_token_id")),
        "pad_token_id": _optional_int(_field(reader, "tokenizer.ggml.padding_token_id")),
    }
    state_dict, tensor_types = {}, {}
    for tensor in reader.tensors:
        name = _hf_name(tensor.name, path)
        shape = tuple(int(d) for d in reversed(tensor.shape))
        weight = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32).reshape(shape)
        if name.endswith("q_proj.weight"):
            weight = unpermute_rotary_rows(weight, heads)
        elif name.endswith("k_proj.weight"):
            weight = unpermute_rotary_rows(weight, kv_heads)
        state_dict[name] = torch.from_numpy(np.ascontiguousarray(weight))
        tensor_types[name] = tensor.tensor_type.name
    token_types = list(_field(reader, "tokenizer.ggml.token_type"))
    return GGUFLlama(config, state_dict, tokens, list(_field(reader, "tokenizer.ggml.merges")),
                     [i for i, kind in enumerate(token_types) if kind == CONTROL_TOKEN_TYPE],
                     _optional_int(_field(reader, "tokenizer.ggml.unknown_token_id")), pre,
                     _field(reader, "tokenizer.chat_template"), tensor_types)


def _optional_int(value) -> int | None:
    return None if value is None else int(value)


def _hf_name(name: str, path: Path) -> str:
    if name in TOP_NAMES:
        return TOP_NAMES[name]
    parts = name.split(".")
    if len(parts) == 4 and parts[0] == "blk" and parts[2] in BLOCK_NAMES:
        return f"model.layers.{parts[1]}.{BLOCK_NAMES[parts[2]]}.{parts[3]}"
    raise UserInputError(f"{path}: tensor {name!r} is not part of a Llama model")


def build_model(gguf_model: GGUFLlama):
    """A ``LlamaForCausalLM`` (fp32) holding the file's weights; a tied head shares the embedding."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**gguf_model.config)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict(gguf_model.state_dict, strict=False, assign=True)
    expected_missing = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) != expected_missing or unexpected:
        raise UserInputError(f"GGUF weights do not fit a Llama of this config: missing {sorted(missing)[:5]}, "
                             f"unexpected {sorted(unexpected)[:5]}")
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    # Buffers (the rotary inverse frequencies) were created on the meta device: build them for real.
    model.model.rotary_emb = type(model.model.rotary_emb)(config=config)
    return model.float().eval()


def build_tokenizer(gguf_model: GGUFLlama):
    """The file's byte-level BPE as a ``PreTrainedTokenizerFast``, with its special tokens and chat template."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(gguf_model.tokens)}
    merges = [tuple(merge.split(" ", 1)) for merge in gguf_model.merges]
    core = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    core.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
                          if gguf_model.pre_tokenizer in DIGIT_SPLITTING_PRE else byte_level)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens([AddedToken(gguf_model.tokens[i], special=True, normalized=False)
                             for i in gguf_model.special_ids])
    ids = {key: gguf_model.config[f"{key}_token_id"] for key in ("bos", "eos", "pad")} | {"unk": gguf_model.unk_token_id}
    named = {f"{key}_token": gguf_model.tokens[i] for key, i in ids.items() if i is not None}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, padding_side="right",
                                        model_input_names=["input_ids", "attention_mask"], **named)
    if gguf_model.chat_template:
        tokenizer.chat_template = gguf_model.chat_template
    return tokenizer
