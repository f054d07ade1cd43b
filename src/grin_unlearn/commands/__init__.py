"""Sub-commands of the `grin-unlearn` CLI (see :mod:`grin_unlearn.cli`)."""
