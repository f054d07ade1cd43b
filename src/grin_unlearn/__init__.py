"""grin-unlearn: GRIN machine unlearning (arXiv 2508.06467) for Hugging Face causal LMs."""

__version__ = "0.1.0"
