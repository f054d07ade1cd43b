"""GRIN step 2: which weights to update.

* :mod:`.top_fraction` — the exact global top-``p`` mask of the scores (``select_top_fraction``), in
  one streamed pass per process, sharded or not;
* :mod:`.auto_ratio` — ``--ratio auto``: ``p`` from the scores themselves (coverage, balance), with
  :mod:`.auto_knee` for the knee rule and the chunked score curves the rules read.
"""

from .top_fraction import mask_fraction, select_top_fraction

__all__ = ["mask_fraction", "select_top_fraction"]
