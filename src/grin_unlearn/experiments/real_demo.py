"""`grin-unlearn demo --real` (`make demo-real`): the demo on the real-model benchmark.

GRIN + NPO and unmasked NPO on SmolLM2-135M-Instruct fine-tuned on the world
(:mod:`.real_benchmark`), evaluated against the oracle and attacked, in the demo's report format.
The settings are the first hand-run of issue #31, **not tuned**: NPO at lr 5e-5 for 5 epochs, batch
8, β 0.1, α 1 (the reference's TOFU values, a 1B–7B model's lr scaled up for a 135M one), both
methods alike; GRIN at p = 0.4, σ² = 0. The tuned comparison is the real-model study's
(docs/results.md). The evaluation caps the retain set at 100 questions (:data:`REAL_EVAL`), and
everything runs under bf16 autocast over fp32 weights (as the target's fine-tune did): in fp32 the
demo took about 28 minutes on 2 cores, over its 20-minute budget (docs/performance.md). The attacked
models are evaluated on the forget set alone (the robustness section reads forget metrics only).
Relearning uses lr 1e-4: the tiny demo's 1e-3 breaks this target outright, and
5e-5 brought nothing back in 15 steps.
"""

from __future__ import annotations

from dataclasses import replace

from ..config import TrainConfig
from ..evaluation import EvalConfig
from ..evaluation.attacks.study import RelearnSettings
from ..training.objectives import ObjectiveHyperparams
from .demo import DemoConfig, MethodSettings
from .real_benchmark import DEFAULT_REAL, RealBenchmarkConfig

REAL_TRAIN = TrainConfig(epochs=5, lr=5e-5, batch_size=8, weight_decay=0.01, warmup_ratio=0.0, max_length=128)
REAL_NPO = ObjectiveHyperparams(alpha=1.0, beta=0.1)
REAL_RELEARN = RelearnSettings(steps=(0, 3, 9), lr=1e-4, batch_size=4)
# The TOFU protocol with the retain set capped at 100 questions: its teacher-forced pass (answer,
# paraphrase and five perturbed answers per question) took 200 of an evaluation's 273 s with all 360.
REAL_EVAL = EvalConfig(retain_max_items=100)


def real_demo_config(benchmark: RealBenchmarkConfig | None = None, objective: str = "npo",
                     attacks: bool = True) -> DemoConfig:
    """The demo's config on the real-model benchmark (module docstring)."""
    return DemoConfig(objective=objective, attacks=attacks, real=benchmark or DEFAULT_REAL,
                      full=MethodSettings(replace(REAL_TRAIN), replace(REAL_NPO)),
                      grin=MethodSettings(replace(REAL_TRAIN), replace(REAL_NPO), ratio=0.4, noise_var=0.0),
                      eval=replace(REAL_EVAL), relearn=replace(REAL_RELEARN), precision="bf16",
                      attack_roles=("forget",))
