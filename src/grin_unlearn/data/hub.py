"""Hub datasets through :mod:`datasets` (e.g. ``locuslab/TOFU``, whose configs are split names).

The Hub is not reachable from every machine (offline clusters, CI here). A failure to reach it raises
one clear :class:`UserInputError` naming the dataset and the offline/cache settings to use instead.
"""

from __future__ import annotations

import os

from ..errors import UserInputError


def load_hub_split(dataset_id: str, config: str, hf_split: str = "train") -> list[dict]:
    try:
        import datasets
    except ImportError as err:  # pragma: no cover - datasets is a hard dependency
        raise UserInputError(f"--data {dataset_id}: reading Hub datasets needs the `datasets` package ({err})") from None
    try:
        dataset = datasets.load_dataset(dataset_id, config, split=hf_split)
    except (ConnectionError, OSError, ValueError, FileNotFoundError) as err:
        offline = os.environ.get("HF_DATASETS_OFFLINE") or os.environ.get("HF_HUB_OFFLINE") or "0"
        cache = os.environ.get("HF_DATASETS_CACHE") or os.environ.get("HF_HOME") or "~/.cache/huggingface"
        raise UserInputError(
            f"--data {dataset_id} (config '{config}'): could not load it from the Hub or the cache "
            f"(cache: {cache}, HF_HUB_OFFLINE={offline}); download it where the Hub is reachable, "
            f"or pass a local folder of <split>.json files. Cause: {type(err).__name__}: {str(err)[:200]}"
        ) from None
    return [dict(row) for row in dataset]
