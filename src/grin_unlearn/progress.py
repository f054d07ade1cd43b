"""Whether to show progress bars: one switch for the whole library.

``GRIN_UNLEARN_QUIET=1`` silences every tqdm bar (scoring, fine-tuning, unlearning, evaluation), which
tests and sweeps set; in a distributed run only the main process draws bars.
"""

from __future__ import annotations

import os

QUIET_ENV = "GRIN_UNLEARN_QUIET"


def show_progress(rank: int = 0) -> bool:
    """True unless ``GRIN_UNLEARN_QUIET=1`` or this is not the process of rank 0."""
    return os.environ.get(QUIET_ENV, "0") != "1" and rank == 0
