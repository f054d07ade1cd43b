"""Memory model of GRIN per device: scoring and masked training, one process, DDP or FSDP2 on N GPUs.

    PYTHONPATH=src .venv/bin/python bench/memory_model.py [--ratio 0.4] [--world 2 4 8]

Prints the predicted peak per device for Llama-2 7B / 13B / 70B (docs/distributed.md). Importable:
``bench/bench_memory.py`` checks it against measured CPU peaks, ``bench/gpu_check.py`` against
``torch.cuda.max_memory_allocated``. Formulas (bytes; ``w`` bytes per weight, ``P`` parameters, ``E``
eligible weights, ``S = round(p·E)`` selected, ``E_T`` the elements of eligible tensors with at least
one selected weight (≈ E for p >= 0.01), ``g`` the largest eligible tensor, ``N`` the FSDP2 world):

    scoring   = W + max(8E' + A_s + R_s,  13E' + C_sel)        E' = E (DDP) or E/N (FSDP2)
        8E': fp32 G_f and G_r; a gradient is folded into its accumulator by a hook and freed at once,
        so no full-size .grad set exists. 13E': the grin scorer's fp32 scores (4E') and selection's
        bool masks (1E') join while G_f and G_r are still held. C_sel: selection's chunk scratch.
    backward  = W + max(A_s, G) + B                            a plain pass keeping the gradients
    training  = W + O + max(A_t, G) + B                        one micro-batch per optimizer step
        G = w·E_T' gradients of the trainable tensors (frozen ones get none), B = w·E_T DDP buckets
        (gradient_as_bucket_view is off), O = the masked optimizer's state (:class:`OptimizerLayout`).
        Backward frees saved activations layer by layer while the gradients grow, so the peak is at
        one end: all activations (the logits stage) or all gradients. With gradient accumulation the
        gradients live through the next forward: replace max by +.
    W = w·P (DDP) or w·P/N + w·P_root + 2·w·P_layer (FSDP2: the sharded weights, the root module's
        embeddings / lm_head / final norm, which FSDP2 keeps unsharded from forward to the end of
        backward, and one all-gathered decoder layer plus the prefetched next one).
    R_s = 2·w·P_layer under FSDP2 (a layer's unsharded gradient and its reduce-scatter buffer), else 0.

Activations ``A`` of one forward + backward over ``t`` tokens (counted with
``torch.autograd.graph.saved_tensors_hooks`` on the Hugging Face Llama with SDPA, then confirmed by the
measured peaks in docs/distributed.md): per decoder layer and token, the two RMSNorm inputs in fp32
(``2·4h``), the three linear-layer inputs (attention input, attention output = o_proj input, MLP input:
``3·w·h``), q, k, v after RoPE (``w·(h + 2·h_kv)``), and the MLP's gate, SiLU, up and product
(``4·w·i``); then the final norm (``4h + w·h``); then the log-prob head: the answer rows' fp32 logits
saved by logsumexp (``4V``) and, at the start of backward, their fp32 gradient (``4V``), its cast back
to the model dtype when that is narrower (``w·V``), the zero-filled gradients of the masked and the
shifted logits (``2·w·V``)::

    A = t·(L·(8h + w·(4h + 2h_kv + 4i)) + 4h + w·h + V·(8 + 2w + [w < 4]·w))

This is smaller than the 34·h·w/2 per layer of Korthikanti et al. (arXiv 2205.05198) because Llama
has no dropout masks and SDPA stores no attention scores. With gradient checkpointing see
:func:`activations`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

GIB = 1024**3
SELECT_CHUNK = 1 << 20  # grin_unlearn.selection._CHUNK: elements per streamed chunk


@dataclass(frozen=True)
class LlamaShape:
    """A Llama architecture: ``(hidden h, intermediate i, layers L, heads, kv heads, vocab V, tied)``."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool = False

    @property
    def kv_hidden(self) -> int:
        return self.hidden * self.kv_heads // self.heads

    @property
    def eligible_per_layer(self) -> int:
        """q, o (h²), k, v (h·h_kv), gate, up, down (h·i): the default eligible weights of one block."""
        h, i = self.hidden, self.intermediate
        return 2 * h * h + 2 * h * self.kv_hidden + 3 * h * i

    @property
    def layer(self) -> int:
        """Parameters of one decoder layer (its eligible weights and two RMSNorm weights)."""
        return self.eligible_per_layer + 2 * self.hidden

    @property
    def root(self) -> int:
        """Parameters outside the decoder layers: embeddings, lm_head (unless tied), final norm."""
        return self.vocab * self.hidden * (1 if self.tied else 2) + self.hidden

    @property
    def params(self) -> int:
        return self.layers * self.layer + self.root

    @property
    def eligible(self) -> int:
        return self.layers * self.eligible_per_layer

    @property
    def largest_eligible(self) -> int:
        return max(self.hidden * self.intermediate, self.hidden * self.hidden)


SHAPES = {
    "7b": LlamaShape(4096, 11008, 32, 32, 32, 32000),  # Llama-2-7B
    "13b": LlamaShape(5120, 13824, 40, 40, 40, 32000),  # Llama-2-13B
    "70b": LlamaShape(8192, 28672, 80, 64, 8, 32000),  # Llama-2-70B (grouped-query attention)
    "1b": LlamaShape(2048, 8192, 16, 16, 16, 32000),  # the GPU check's model (bench/gpu_check.py)
    "10m": LlamaShape(256, 688, 8, 4, 4, 8000),  # the CPU measurements (bench/bench_memory.py)
    "50m": LlamaShape(512, 1376, 10, 8, 8, 16000),
    "100m": LlamaShape(768, 2048, 12, 12, 12, 16000),
    "tiny": LlamaShape(64, 176, 2, 4, 4, 512),  # the CPU dry run of the GPU check
}


@dataclass(frozen=True)
class OptimizerLayout:
    """Bytes the masked optimizer holds: ``moments·S + per_selected·S + per_trainable·E_T
    + scratch·k_max + step·T`` (``T`` trainable tensors, ``k_max`` the most selected in one tensor).

    ``per_selected`` is the index/bookkeeping overhead per selected weight, ``per_trainable`` a
    per-element mask kept for each trainable tensor, ``scratch`` persistent buffers sized by the
    largest ``k``. Fields are ``None``-free integers so the formula is one line.
    """

    name: str
    moments: int = 8  # fp32 exp_avg and exp_avg_sq of each selected weight
    per_selected: int = 0
    per_trainable: int = 1
    scratch: int = 0
    step: int = 4  # one fp32 step counter per tensor

    def state_bytes(self, selected: int, trainable_elements: int, k_max: int, tensors: int) -> int:
        return ((self.moments + self.per_selected) * selected + self.per_trainable * trainable_elements
                + self.scratch * k_max + self.step * tensors)


# grin_unlearn.training.masked_optim.MaskedAdamW as of main 0c22e73: fp32 moments of the selected
# weights, the full-shape bool mask of every trainable tensor (self.masks), an fp32 step per tensor.
MASKED_ADAMW_BOOL = OptimizerLayout("bool masks")
# The precomputed-index layout (issue #15 item 2): int32 flat indices, no bool mask kept by the
# optimizer (the gradient hooks still hold one: counted by the model as masks, not optimizer state),
# two fp32 scratch buffers of the largest k.
MASKED_ADAMW_INDEX = OptimizerLayout("int32 indices", per_selected=4, per_trainable=0, scratch=8)


LAYOUTS = {layout.name: layout for layout in (MASKED_ADAMW_BOOL, MASKED_ADAMW_INDEX)}


def layout_of(optimizer) -> OptimizerLayout:
    """The layout of a live masked optimizer, read from what it holds (``indices`` or ``masks``)."""
    if hasattr(optimizer, "indices"):
        return MASKED_ADAMW_INDEX
    if hasattr(optimizer, "masks"):
        return MASKED_ADAMW_BOOL
    raise TypeError(f"{type(optimizer).__name__} is not a masked optimizer this model knows")


def held_bytes(optimizer) -> int:
    """Bytes of every distinct tensor storage the optimizer holds: its state, plus any dict of
    tensors among its attributes (masks, indices, scratch). A measurement, independent of the layout."""
    import torch

    seen: dict[int, int] = {}

    def add(value) -> None:
        if torch.is_tensor(value):
            storage = value.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
        elif isinstance(value, dict):
            for item in value.values():
                add(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                add(item)

    for state in optimizer.state.values():
        add(state)
    for key, value in vars(optimizer).items():
        if key not in ("state", "param_groups", "defaults"):
            add(value)
    return sum(seen.values())


@dataclass(frozen=True)
class Setup:
    """What one device runs: ``w`` bytes per weight, tokens per scoring / training micro-batch, the
    selected fraction ``ratio``, ``mode`` (``single``, ``ddp`` or ``fsdp2``) over ``world`` devices."""

    w: int = 2
    score_tokens: int = 8 * 128  # score_batch_size 8 x max_length 128 (the defaults)
    train_tokens: int = 2 * 16 * 128  # batch_size 16 forget + 16 retain rows x 128
    ratio: float = 0.4
    mode: str = "ddp"
    world: int = 1
    layout: OptimizerLayout = MASKED_ADAMW_BOOL
    checkpointing: bool = False  # gradient checkpointing in training (--gradient-checkpointing)


def _layer_bytes(shape: LlamaShape, w: int) -> int:
    """``a = 8h + w·(4h + 2h_kv + 4i)``: what one decoder layer saves per token."""
    h, i, kv = shape.hidden, shape.intermediate, shape.kv_hidden
    return 8 * h + w * (4 * h + 2 * kv + 4 * i)


def saved_activations(shape: LlamaShape, tokens: int, w: int) -> float:
    """Bytes autograd saves in the forward pass: ``t·(L·a + 4h + w·h + 4V)``."""
    h = shape.hidden
    return tokens * (shape.layers * _layer_bytes(shape, w) + 4 * h + w * h + 4 * shape.vocab)


def activations(shape: LlamaShape, tokens: int, w: int, checkpointing: bool = False) -> float:
    """Peak bytes of one forward + backward (formula in the module docstring): the saved activations
    plus the log-prob head's backward buffers ``t·V·(4 + 2w + [w < 4]·w)``, which come first in backward.

    With gradient checkpointing each layer keeps only its input (``w·h`` per token); backward first
    runs the head (its saved ``4V`` and buffers), then rebuilds one layer's ``a`` at a time, so the peak
    is ``t·(L·w·h + 4h + w·h + max(4V + head, a))``.
    """
    h = shape.hidden
    head = shape.vocab * (4 + 2 * w + (w if w < 4 else 0))
    if not checkpointing:
        return saved_activations(shape, tokens, w) + tokens * head
    return tokens * (shape.layers * w * h + 4 * h + w * h + max(4 * shape.vocab + head, _layer_bytes(shape, w)))


def predict(shape: LlamaShape, setup: Setup) -> dict[str, float]:
    """Per-device bytes of each component and of the peaks ``scoring``, ``scoring_offload``,
    ``training``, ``backward`` and ``adamw_training`` (full fine-tuning with torch's AdamW, moments in
    the weights' dtype: the unmasked baseline). Formulas in the module docstring."""
    w, n = setup.w, setup.world if setup.mode == "fsdp2" else 1
    E = shape.eligible
    selected = round(setup.ratio * E)
    k_max = min(shape.largest_eligible, selected)
    tensors = shape.layers * 7
    if setup.mode == "fsdp2":
        weights = w * shape.params / n + w * shape.root * (n - 1) / n + 2 * w * shape.layer
        transient = 2 * w * shape.eligible_per_layer
    else:
        weights, transient = w * shape.params, 0
    act_s = activations(shape, setup.score_tokens, w)
    act_t = activations(shape, setup.train_tokens, w, setup.checkpointing)
    accumulators, scores, masks = 8 * E / n, 4 * E / n, E / n
    chunk = min(SELECT_CHUNK, shape.largest_eligible)
    select_scratch = 4 * 4 * chunk  # int32 keys of a chunk and its shifted / masked / compared copies
    optimizer = setup.layout.state_bytes(selected, E, k_max, tensors) / n
    grads = w * E / n
    buckets = w * E if setup.mode == "ddp" and setup.world > 1 else 0
    mask_held = 0 if setup.layout.per_trainable else masks  # the hooks' masks when the optimizer keeps none
    return {
        "weights": weights,
        "local_weights": w * shape.params / n,  # the weights a device holds between steps (its shards)
        "accumulators": accumulators,
        "scores": scores,
        "masks": masks,
        "optimizer": optimizer,
        "gradients": grads + buckets,
        "act_scoring": act_s,
        "act_training": act_t,
        "scoring": weights + max(accumulators + act_s + transient,
                                 accumulators + scores + masks + select_scratch),
        "scoring_offload": weights + act_s + w * shape.largest_eligible + transient,
        "training": weights + optimizer + mask_held + buckets + max(act_t, grads + transient),
        # one forward + backward over a scoring batch that keeps the eligible weights' gradients: what
        # the sharding itself costs, before GRIN's accumulators (measured under FSDP2 on CPU)
        "backward": weights + buckets + max(act_s, grads + transient),
        "adamw_training": weights + 2 * w * shape.params / n + buckets + max(act_t, w * shape.params / n),
    }


def peak_over_start(pred: dict[str, float], step: str) -> float:
    """The predicted peak of ``step`` less what is allocated before it starts: the weights (under FSDP2
    the local shards only: the unsharded root and layers are allocated within the step), and for
    ``training`` the masks (selection made them). What a measurement over its own start sees."""
    return pred[step] - pred["local_weights"] - (pred["masks"] if step == "training" else 0)


def table(names=("7b", "13b", "70b"), worlds=(2, 4, 8), ratio: float = 0.4) -> str:
    """Markdown table of the predicted per-GPU peaks (GiB), bf16, default batch sizes."""
    rows = ["| model | P | E | mode | weights | G_f+G_r | scores+masks | masked AdamW state | activations "
            "(score / train) | **scoring** | scoring, accumulators on CPU | **masked training** "
            "| masked training, checkpointing | full fine-tuning, AdamW |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        shape = SHAPES[name]
        modes = [("ddp", 2)] + [("fsdp2", n) for n in worlds]
        for mode, world in modes:
            pred = predict(shape, Setup(ratio=ratio, mode=mode, world=world))
            ckpt = predict(shape, Setup(ratio=ratio, mode=mode, world=world, checkpointing=True))
            label = "DDP, any N ≥ 2" if mode == "ddp" else f"FSDP2, N={world}"
            offload = f"{pred['scoring_offload'] / GIB:.1f}" if mode == "ddp" else "—"
            rows.append(
                f"| {name.upper()} | {shape.params / 1e9:.2f}B | {shape.eligible / 1e9:.2f}B | {label} "
                f"| {pred['weights'] / GIB:.1f} | {pred['accumulators'] / GIB:.1f} "
                f"| {(pred['scores'] + pred['masks']) / GIB:.1f} | {pred['optimizer'] / GIB:.1f} "
                f"| {pred['act_scoring'] / GIB:.1f} / {pred['act_training'] / GIB:.1f} "
                f"| **{pred['scoring'] / GIB:.1f}** | {offload} | **{pred['training'] / GIB:.1f}** "
                f"| {ckpt['training'] / GIB:.1f} | {pred['adamw_training'] / GIB:.1f} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ratio", type=float, default=0.4, help="selected fraction p")
    parser.add_argument("--world", type=int, nargs="*", default=[2, 4, 8], help="FSDP2 world sizes")
    args = parser.parse_args()
    print(f"Predicted peak per GPU, GiB: bf16 weights, p={args.ratio}, scoring batch 8x128 tokens, training "
          "batch (16 forget + 16 retain) x 128, one micro-batch per step, no gradient checkpointing. DDP "
          "keeps everything whole on every GPU (one process: the same less DDP's gradient buckets).\n")
    print(table(worlds=tuple(args.world), ratio=args.ratio))


if __name__ == "__main__":
    main()
