"""Attacks that tell forgetting from hiding: quantization (:mod:`.quantize`) and relearning
(:mod:`.relearn`), the share of forgotten knowledge each brings back (:mod:`.recovery`), and both run
on a set of models (:mod:`.study`)."""

from .quantize import QuantizeConfig, changed_buckets, quantize_model, rtn_dequantized
from .recovery import recovery, recovery_table
from .relearn import relearn_curve, split_relearn_probe

__all__ = ["QuantizeConfig", "changed_buckets", "quantize_model", "recovery", "recovery_table", "relearn_curve",
           "rtn_dequantized", "split_relearn_probe"]
