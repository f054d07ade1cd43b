"""What an evaluation computes and with which budgets: :class:`EvalConfig` and its two protocols.

``tofu`` (the default) is the reference-compatible TOFU protocol: the settings of
locuslab/open-unlearning's TOFU evaluation (``configs/eval/tofu.yaml``, ``configs/eval/tofu_metrics/*.yaml``,
``configs/generation/default.yaml``): greedy generation of up to 200 new tokens cut at EOS and the
stop strings, every item of every set, Min-K% with k = 0.4. Sequences are 512 tokens at most
(:class:`~grin_unlearn.data.formatting.PromptFormat`).

``fast`` keeps the metric definitions and shortens the work for sweeps on a CPU: 32 new tokens and
the first 200 retain items. Its ROUGE-L and model utility are not comparable with published TOFU
numbers (answers longer than 32 tokens are cut; a different retain sample), which is why it is never
the default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ..errors import UserInputError

# bench/bench_decoding.py (1.55M Llama, 1,017 prompts x 200 tokens, 2 CPU cores): batches of 256-512 take
# about 0.65x the time of batches of 64 when no answer ends early; larger ones gain little and grow the KV cache.
CPU_GENERATION_BATCH = 512
CPU_KV_BUDGET = 2**30
PROTOCOLS: dict[str, dict] = {
    "tofu": {"max_new_tokens": 200, "retain_max_items": None, "min_k": 0.4},
    "fast": {"max_new_tokens": 32, "retain_max_items": 200, "min_k": 0.4},
}


@dataclass
class EvalConfig:
    """How much to evaluate and how (defaults: the ``tofu`` protocol).

    Attributes:
        max_new_tokens: greedy generation length for ROUGE-L / keyword accuracy.
        batch_size: sequences per teacher-forced forward pass.
        generation_batch_size: prompts decoded together (None: ``batch_size`` on an accelerator; on a
            CPU as many as keep the KV cache within :data:`CPU_KV_BUDGET` bytes, between ``batch_size``
            and :data:`CPU_GENERATION_BATCH`: a small model's decoding step costs little more for 512
            rows than for 64).
        max_items: evaluate only the first ``max_items`` records of every set (None: all).
        retain_max_items: cap for the retain set on top of ``max_items`` (None: all).
        mia: compute the LOSS / zlib / Min-K% / Min-K%++ membership scores (and the AUCs, PrivLeak;
            with an oracle, the reference-model attack's AUC).
        mia_gradnorm: also the GradNorm attack (one backward pass per forget and holdout answer; off by
            default, as in the reference's TOFU protocol).
        generation: generate answers (off: no ROUGE-L, keyword accuracy, nor their utility share).
        min_k: the fraction ``k`` of the Min-K% Prob attack.
        stop_strings: generated text is cut at the first of these (and at EOS); generation of a
            sequence stops once it holds one. The reference's default generation config has none.
    """

    max_new_tokens: int = 200
    batch_size: int = 64
    generation_batch_size: int | None = None
    max_items: int | None = None
    retain_max_items: int | None = None
    mia: bool = True
    mia_gradnorm: bool = False
    generation: bool = True
    min_k: float = 0.4
    stop_strings: list[str] = field(default_factory=list)

    def __post_init__(self):
        for name in ("max_new_tokens", "batch_size", "generation_batch_size", "max_items", "retain_max_items"):
            value = getattr(self, name)
            if value is None and (name.endswith("max_items") or name == "generation_batch_size"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise UserInputError(f"--{name.replace('_', '-')}: must be a positive integer, got {value!r}")
        if isinstance(self.min_k, bool) or not isinstance(self.min_k, (int, float)) or not 0 < self.min_k <= 1:
            raise UserInputError(f"min_k: must be a fraction in (0, 1], got {self.min_k!r}")
        if isinstance(self.stop_strings, str) or not all(isinstance(s, str) and s for s in self.stop_strings):
            raise UserInputError(f"--stop-strings: expected a list of non-empty strings, got {self.stop_strings!r}")
        self.stop_strings = list(self.stop_strings)  # a list, as eval.json stores it

    @classmethod
    def for_protocol(cls, name: str, **overrides) -> EvalConfig:
        """The settings of protocol ``name`` (``tofu`` or ``fast``), then ``overrides`` (None values ignored)."""
        if name not in PROTOCOLS:
            raise UserInputError(f"--protocol: expected one of {', '.join(PROTOCOLS)}, got {name!r}")
        known = {f.name for f in fields(cls)}
        values = {**PROTOCOLS[name], **{k: v for k, v in overrides.items() if v is not None and k in known}}
        return cls(**values)

    def decoding_batch(self, device, kv_bytes_per_row: int) -> int:
        """Prompts per decoding batch on ``device`` when one row's KV cache takes ``kv_bytes_per_row``
        (see ``generation_batch_size``)."""
        if self.generation_batch_size is not None:
            return self.generation_batch_size
        if getattr(device, "type", str(device)) != "cpu":
            return self.batch_size
        return max(self.batch_size, min(CPU_GENERATION_BATCH, CPU_KV_BUDGET // max(kv_bytes_per_row, 1)))

    @property
    def protocol(self) -> str:
        """``tofu`` when every setting is the reference's, ``fast`` for that preset, else ``custom``."""
        for name, preset in PROTOCOLS.items():
            if self.max_items is None and self.generation and self.mia and not self.stop_strings \
                    and all(getattr(self, key) == value for key, value in preset.items()):
                return name
        return "custom"

    def to_dict(self) -> dict:
        return asdict(self)
