"""GRIN step 3: Gaussian noise on the selected weights.

* :mod:`.injection` — ``θ ← θ + N(0, σ²)`` on the masked entries (``inject_noise``), absolute or
  relative to each tensor's scale, reproducible per weight name, sharded or not;
* :mod:`.auto_noise` — ``--noise-var auto`` and the noise probe: the largest σ² whose forget and
  retain losses stay within a tolerance.
"""

from .injection import NOISE_MODES, inject_noise

__all__ = ["NOISE_MODES", "inject_noise"]
