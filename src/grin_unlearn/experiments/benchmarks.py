"""The two built-in benchmarks behind one door: the tiny-model one (:mod:`.embedded`, for speed) and
the real-model one (:mod:`.real_benchmark`, where claims are made).

Sweeps, the tuner and the demo name a benchmark by its config (:class:`~.embedded.EmbeddedConfig` or
:class:`~.real_benchmark.RealBenchmarkConfig`); these functions build or reuse its folders and train
its extra oracles (the tuner's validation oracle) with the benchmark's own recipe.
"""

from __future__ import annotations

from pathlib import Path

from .embedded import EmbeddedAssets, EmbeddedConfig, prepare_embedded, train_from_base
from .real_benchmark import RealBenchmarkConfig, prepare_real, train_real

BenchmarkConfig = EmbeddedConfig | RealBenchmarkConfig


def prepare_benchmark(config: BenchmarkConfig, cache_dir: str | Path | None = None, log=print) -> EmbeddedAssets:
    """The world, base, target and oracle folders of ``config`` (built or reused)."""
    if isinstance(config, RealBenchmarkConfig):
        return prepare_real(config, cache_dir, log=log)
    return prepare_embedded(config, cache_dir, log=log)


def train_oracle(assets: EmbeddedAssets, records: list[dict], out: Path, log=print) -> Path:
    """The base fine-tuned on ``records`` with the benchmark's recipe into ``out`` (reused when present)."""
    if not isinstance(assets.config, RealBenchmarkConfig):
        return train_from_base(assets, records, out, log=log)
    if not (out / "config.json").is_file():
        log(f"fine-tuning {assets.config.model} on {len(records)} records into {out} "
            f"({assets.config.finetune.epochs} epochs, {assets.config.finetune.precision})")
        train_real(assets.base, records, assets.config, out)
    return out
