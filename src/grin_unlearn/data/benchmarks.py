"""The benchmarks: the interface and registry (:mod:`.benchmark_base`) with the TOFU, WMDP,
PKU-SafeRLHF and MUSE adapters registered on it (:mod:`.benchmark_adapters`). Import them from here."""

from . import benchmark_adapters  # noqa: F401  (registers the adapters)
from .benchmark_base import (BENCHMARKS, Benchmark, EvalSets, HubSource, SafetyPrompts, TrainingSets, get_benchmark,
                             is_records_file, parse_split, register_benchmark, validate_mcq_records,
                             validate_text_records)

__all__ = ["BENCHMARKS", "Benchmark", "EvalSets", "HubSource", "SafetyPrompts", "TrainingSets", "get_benchmark",
           "is_records_file", "parse_split", "register_benchmark", "validate_mcq_records", "validate_text_records"]
