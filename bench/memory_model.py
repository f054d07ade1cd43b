"""Memory model of GRIN per device: scoring and masked training, one process, DDP or FSDP2 on N GPUs.

    PYTHONPATH=src .venv/bin/python bench/memory_table.py [--ratio 0.4] [--world 2 4 8]   # the table

Prints the predicted peak per device for Llama-2 7B / 13B / 70B (docs/distributed.md). Importable:
``bench/bench_memory.py`` checks it against measured CPU peaks, ``bench/gpu_check.py`` against
``torch.cuda.max_memory_allocated``; both run the steps of ``bench/memory_steps.py``.

Symbols (bytes): ``w`` per weight, ``P`` parameters, ``E`` eligible weights, ``S = round(p·E)``
selected, ``g`` the largest eligible tensor, ``N`` the FSDP2 world (1 otherwise), ``P_r`` the root's
parameters (embeddings, lm_head, final norm), ``P_l`` one decoder layer's, ``E_l`` its eligible ones,
``t`` tokens of a micro-batch, ``A`` the activations of one forward + backward (below).

A step's peak is the largest of its **phases**, each a sum of what is alive at one moment::

    peak(step) = max over phases of  Σ terms(phase)

One process / DDP (every tensor whole; DDP adds its gradient buckets ``B = w·E_T``):

    scoring   = wP + 8E + max(A_s,  4E + E + C_sel)
        8E: fp32 G_f and G_r (a hook folds each gradient into its accumulator and frees it, so no
        .grad set exists); then the grin scorer's fp32 scores (4E) and selection's bool masks (E),
        C_sel its chunk scratch. Not modelled: ``--ratio auto`` with the grin scorer keeps one more
        fp32 accumulator, the retain pass's squared batch gradients (+4E).
    training  = wP + O + E + B + max(A_t, G)      G = w·E_T gradients of the trainable tensors
        O: the masked optimizer's state (:class:`OptimizerLayout`: 12 B per selected weight);
        E: the bool masks the gradient hooks hold. Backward frees saved activations layer by layer
        while the gradients grow, so the peak is at one end: all activations or all gradients.
    backward  = wP + B + max(A_s, G)              one pass keeping the gradients

FSDP2 (``N`` processes, ``grin_unlearn.parallel.sharding.shard_model``: each decoder layer and the root
sharded, gradients reduced in fp32, ``r = 4``). Held between steps: the local shards ``wP/N``.
Within a step every term with ``E``, ``S`` or ``G`` is divided by ``N``, and four phases of each
forward + backward compete (found in the allocator traces of ``bench/bench_memory.py`` on CPU/gloo)::

    head backward     A                                  all activations and the logits' gradients
    root all-gather   A_saved + 2w·P_r                   backward starts by gathering the root again
                                                         (it is resharded after forward): the
                                                         gather's output and the unsharded copies
                                                         (on gloo: a staging copy) coexist
    layer all-gather  max(t·L·a, G) + w·P_r + 3w·P_l + r·U
                                                         backward's prefetch of the next layer: the
                                                         root and this layer unsharded, the next
                                                         one's gather (2w·P_l), the last reduce-
                                                         scatter's fp32 input (kept until the next);
                                                         layers' activations at one end, gradients
                                                         at the other
    reduce-scatter    G + w·P_r + w·P_l + RS             a layer's gradients being reduced
    RS = r·U + max(w·U, r·U/N + [gloo]·r·U)              U: the trainable elements of one layer (E_l;
        all P_l, and P_r at the root, in full fine-tuning). The fp32 input, and either the unsharded
        gradients (before the copy-in frees them) or the sharded output plus gloo's staging copy.

    scoring  = wP/N + 8E/N + max(phases with G = 0,  4E/N + E/N + C_sel)
    training = wP/N + O/N + E/N + max(phases with t_train, G = w·E_T/N)

What a measurement over the start of a step sees is ``peak - held before`` (:func:`held_before`):
the local weights, and for ``training`` the masks (selection made them).

Activations ``A`` of one forward + backward over ``t`` tokens (counted with
``torch.autograd.graph.saved_tensors_hooks`` on the Hugging Face Llama with SDPA, then confirmed by the
measured peaks in docs/distributed.md): per decoder layer and token, the two RMSNorm inputs in fp32
(``2·4h``), the three linear-layer inputs (attention input, attention output = o_proj input, MLP input:
``3·w·h``), q, k, v after RoPE (``w·(h + 2·h_kv)``), and the MLP's gate, SiLU, up and product
(``4·w·i``); then the final norm (``4h + w·h``); then the log-prob head: the answer rows' fp32 logits
saved by logsumexp (``4V``) and, at the start of backward, three fp32 buffers of their size at once
(logsumexp's gradient, gather's zero-filled gradient and their sum: ``12V`` whatever ``w``, measured;
the cast back to the model dtype and the zero-filled gradients of the masked and shifted logits that
follow take no more)::

    A_saved = t·(L·a + 4h + w·h + 4V),   a = 8h + w·(4h + 2h_kv + 4i)
    A       = A_saved + 12·t·V

This is smaller than the 34·h·w/2 per layer of Korthikanti et al. (arXiv 2205.05198) because Llama
has no dropout masks and SDPA stores no attention scores. With gradient checkpointing see
:func:`activations`.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3
SELECT_CHUNK = 1 << 20  # grin_unlearn.selection.top_fraction._CHUNK: elements per streamed chunk
REDUCE_BYTES = 4  # grin_unlearn.parallel.sharding.shard_model: MixedPrecisionPolicy(reduce_dtype=torch.float32)
STEPS = ("scoring", "training", "backward", "adamw_training")


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
    "90m": LlamaShape(768, 2048, 12, 12, 12, 4000),  # 100m with a small vocabulary: under FSDP2 the
    "100m": LlamaShape(768, 2048, 12, 12, 12, 16000),  # gradients, not the root's all-gather, set the peak
    "tiny": LlamaShape(64, 176, 2, 4, 4, 512),  # the CPU dry run of the GPU check
}


@dataclass(frozen=True)
class OptimizerLayout:
    """Bytes the masked optimizer holds: ``moments·S + per_selected·S + per_trainable·E_T
    + scratch·k_max + step·T`` (``T`` trainable tensors, ``k_max`` the most selected in one tensor).

    ``per_selected`` is the index overhead per selected weight, ``per_trainable`` a per-element mask
    kept for each trainable tensor, ``scratch`` persistent buffers sized by the largest ``k``.
    """

    name: str
    moments: int = 8  # fp32 exp_avg and exp_avg_sq of each selected weight
    per_selected: int = 0
    per_trainable: int = 0
    scratch: int = 0
    step: int = 4  # one fp32 step counter per tensor

    def state_bytes(self, selected: int, trainable_elements: int, k_max: int, tensors: int) -> int:
        return ((self.moments + self.per_selected) * selected + self.per_trainable * trainable_elements
                + self.scratch * k_max + self.step * tensors)


# grin_unlearn.training.masked_optim.MaskedAdamW: fp32 moments and int32 flat indices of the selected
# weights (12 B each), two fp32 scratch buffers of the largest k, an fp32 step per tensor. It keeps no
# bool mask; the gradient hooks hold the selection's masks (counted by the model as masks).
MASKED_ADAMW_INDEX = OptimizerLayout("int32 indices", per_selected=4, scratch=8)
LAYOUTS = {layout.name: layout for layout in (MASKED_ADAMW_INDEX,)}


def layout_of(optimizer) -> OptimizerLayout:
    """The layout of a live masked optimizer, read from what it holds."""
    if hasattr(optimizer, "indices"):
        return MASKED_ADAMW_INDEX
    raise TypeError(f"{type(optimizer).__name__} is not a masked optimizer this model knows")


@dataclass(frozen=True)
class Setup:
    """What one device runs: ``w`` bytes per weight, tokens per scoring / training micro-batch, the
    selected fraction ``ratio``, ``mode`` (``single``, ``ddp`` or ``fsdp2``) over ``world`` devices,
    the collective ``backend`` (``nccl`` or ``gloo``: gloo stages each reduce-scatter's input once more)."""

    w: int = 2
    score_tokens: int = 8 * 128  # score_batch_size 8 x max_length 128 (the defaults)
    train_tokens: int = 2 * 16 * 128  # batch_size 16 forget + 16 retain rows x 128
    ratio: float = 0.4
    mode: str = "ddp"
    world: int = 1
    layout: OptimizerLayout = MASKED_ADAMW_INDEX
    checkpointing: bool = False  # gradient checkpointing in training (--gradient-checkpointing)
    backend: str = "nccl"

    def __post_init__(self):
        if self.mode not in ("single", "ddp", "fsdp2"):
            raise ValueError(f"mode: expected 'single', 'ddp' or 'fsdp2', got {self.mode!r}")
        if self.backend not in ("nccl", "gloo"):
            raise ValueError(f"backend: expected 'nccl' or 'gloo', got {self.backend!r}")


def _layer_bytes(shape: LlamaShape, w: int) -> int:
    """``a = 8h + w·(4h + 2h_kv + 4i)``: what one decoder layer saves per token."""
    h, i, kv = shape.hidden, shape.intermediate, shape.kv_hidden
    return 8 * h + w * (4 * h + 2 * kv + 4 * i)


def saved_activations(shape: LlamaShape, tokens: int, w: int, checkpointing: bool = False) -> float:
    """Bytes autograd saves in the forward pass: ``t·(L·a + 4h + w·h + 4V)``; with gradient
    checkpointing each layer keeps only its input: ``t·(L·w·h + 4h + w·h + 4V)``."""
    h = shape.hidden
    per_layer = w * h if checkpointing else _layer_bytes(shape, w)
    return tokens * (shape.layers * per_layer + 4 * h + w * h + 4 * shape.vocab)


def activations(shape: LlamaShape, tokens: int, w: int, checkpointing: bool = False) -> float:
    """Peak bytes of one forward + backward (formula in the module docstring): the saved activations
    plus the log-prob head's backward buffers ``12·t·V`` (three fp32 ``(t, V)`` tensors), which come
    first in backward.

    With gradient checkpointing each layer keeps only its input (``w·h`` per token); backward first
    runs the head (its saved ``4V`` and buffers), then rebuilds one layer's ``a`` at a time, so the peak
    is ``t·(L·w·h + 4h + w·h + max(4V + head, a))``.
    """
    h = shape.hidden
    head = 12 * shape.vocab
    if not checkpointing:
        return saved_activations(shape, tokens, w) + tokens * head
    return tokens * (shape.layers * w * h + 4 * h + w * h + max(4 * shape.vocab + head, _layer_bytes(shape, w)))


def reduce_scatter_bytes(unit: float, w: int, world: int, backend: str) -> float:
    """Peak of one FSDP2 reduce-scatter of ``unit`` trainable elements: the fp32 input ``r·U`` and
    either the unsharded gradients ``w·U`` (before the copy-in frees them) or the output ``r·U/N``
    plus gloo's staging copy of the input ``r·U``: ``r·U + max(w·U, r·U/N + [gloo]·r·U)``."""
    r = REDUCE_BYTES
    return r * unit + max(w * unit, r * unit / world + (r * unit if backend == "gloo" else 0))


def pass_phases(shape: LlamaShape, setup: Setup, tokens: int, gradients: float, trainable_unit: float,
                checkpointing: bool = False) -> dict[str, dict[str, float]]:
    """The phases of one forward + backward over ``tokens`` that keeps ``gradients`` bytes of (local)
    gradients, each as its terms (bytes): one process and DDP have two, FSDP2 four (module docstring).
    ``trainable_unit``: ``U``, the trainable elements of the largest FSDP2 unit (its reduce-scatter)."""
    w, r = setup.w, REDUCE_BYTES
    act = activations(shape, tokens, w, checkpointing)
    if setup.mode != "fsdp2":
        return {"activations": {"activations": act}, "gradients": {"gradients": gradients}}
    saved = saved_activations(shape, tokens, w, checkpointing)
    a = _layer_bytes(shape, w)
    layers = tokens * (shape.layers * w * shape.hidden + a if checkpointing else shape.layers * a)
    ends = {"layers' activations": layers} if layers >= gradients else {"gradients": gradients}
    root, layer = w * shape.root, w * shape.layer
    return {
        "head backward": {"activations": act},
        "root all-gather": {"saved activations": saved, "root all-gather": 2 * root},
        "layer all-gather": {**ends, "unsharded root": root, "unsharded layer": layer, "layer all-gather": 2 * layer,
                             "reduce-scatter input": r * trainable_unit},
        "reduce-scatter": {"gradients": gradients, "unsharded root": root, "prefetched layer": layer,
                           "reduce-scatter": reduce_scatter_bytes(trainable_unit, w, setup.world, setup.backend)},
    }


def _with(base: dict[str, float], phases: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    return {name: {**base, **terms} for name, terms in phases.items()}


def step_phases(shape: LlamaShape, setup: Setup) -> dict[str, dict[str, dict[str, float]]]:
    """``{step: {phase: {term: bytes}}}`` per device for the steps ``scoring``, ``training``,
    ``backward`` and ``adamw_training`` (full fine-tuning with torch's AdamW, moments in the weights'
    dtype: the unmasked baseline). The formulas are in the module docstring."""
    w, fsdp = setup.w, setup.mode == "fsdp2"
    n = setup.world if fsdp else 1
    E, P = shape.eligible, shape.params
    selected = round(setup.ratio * E)
    k_max = min(shape.largest_eligible, selected)
    tensors = shape.layers * 7
    weights = {"weights": w * P / n}
    buckets = w * E if setup.mode == "ddp" and setup.world > 1 else 0
    adamw_buckets = w * P if setup.mode == "ddp" and setup.world > 1 else 0
    unit = shape.eligible_per_layer
    chunk = min(SELECT_CHUNK, shape.largest_eligible)
    select = {"scores": 4 * E / n, "masks": E / n,
              "selection scratch": 4 * 4 * chunk}  # int32 keys of a chunk and its shifted / masked / compared copies
    optimizer = setup.layout.state_bytes(selected / n, E / n, k_max / n, tensors)
    score_base = {**weights, "accumulators": 8 * E / n}
    train_base = {**weights, "optimizer": optimizer, "masks": E / n, "DDP buckets": buckets}
    adamw_base = {**weights, "optimizer": 2 * w * P / n + 4 * (tensors + 2 * shape.layers + 3),
                  "DDP buckets": adamw_buckets}
    return {
        "scoring": {**_with(score_base, pass_phases(shape, setup, setup.score_tokens, 0, unit)),
                    "score + select": {**score_base, **select}},
        "training": _with(train_base, pass_phases(shape, setup, setup.train_tokens, w * E / n, unit,
                                                  setup.checkpointing)),
        "backward": _with({**weights, "DDP buckets": buckets},
                          pass_phases(shape, setup, setup.score_tokens, w * E / n, unit)),
        "adamw_training": _with(adamw_base, pass_phases(shape, setup, setup.train_tokens, w * P / n,
                                                        max(shape.layer, shape.root), setup.checkpointing)),
    }


def peak_terms(shape: LlamaShape, setup: Setup) -> dict[str, dict[str, float]]:
    """``{step: {"phase": name, term: bytes, …}}``: the terms of each step's largest phase."""
    out = {}
    for step, phases in step_phases(shape, setup).items():
        name = max(phases, key=lambda p: sum(phases[p].values()))
        out[step] = {"phase": name, **phases[name]}
    return out


def predict(shape: LlamaShape, setup: Setup) -> dict[str, float]:
    """Per-device bytes of each component and of the peaks ``scoring``, ``training``, ``backward``,
    ``adamw_training`` and ``scoring_offload`` (one process / DDP with ``accumulator_device="cpu"``:
    weights, activations and one gradient on the device)."""
    w, n = setup.w, setup.world if setup.mode == "fsdp2" else 1
    E = shape.eligible
    selected = round(setup.ratio * E)
    pred = {step: sum(v for k, v in terms.items() if k != "phase")
            for step, terms in peak_terms(shape, setup).items()}
    return {
        **pred,
        "local_weights": w * shape.params / n,  # the weights a device holds between steps (its shards)
        "accumulators": 8 * E / n,
        "scores": 4 * E / n,
        "masks": E / n,
        "optimizer": setup.layout.state_bytes(selected / n, E / n, min(shape.largest_eligible, selected) / n,
                                              shape.layers * 7),
        "gradients": w * E / n,
        "act_scoring": activations(shape, setup.score_tokens, w),
        "act_training": activations(shape, setup.train_tokens, w, setup.checkpointing),
        "scoring_offload": w * shape.params + activations(shape, setup.score_tokens, w) + w * shape.largest_eligible,
    }


def held_before(pred: dict[str, float], step: str) -> float:
    """What is allocated before ``step`` starts: the weights (under FSDP2 the local shards only: the
    unsharded root and layers are allocated within the step), and for ``training`` the masks."""
    return pred["local_weights"] + (pred["masks"] if step == "training" else 0)


def peak_over_start(pred: dict[str, float], step: str) -> float:
    """The predicted peak of ``step`` less :func:`held_before`: what a measurement over its start sees."""
    return pred[step] - held_before(pred, step)
