"""Evaluation of a model on unlearning benchmarks.

* :mod:`.runner` — :func:`evaluate`: sets and roles in, the ``eval.json`` dict out;
* :mod:`.tofu` — the TOFU protocol, reproducing the reference implementation (open-unlearning);
* :mod:`.set_metrics` — the per-set metrics, registered, and the loop over a protocol's list of them;
* :mod:`.multiple_choice` — WMDP/MMLU letter-logit and cloze accuracy, raw-text NLL;
* :mod:`.safety` — refusal / harmful-keyword / classifier rates (PKU-SafeRLHF);
* :mod:`.engine` — the two model passes (teacher forcing, greedy generation);
* :mod:`.aggregates` — the cross-set numbers, registered; :mod:`.report` — ``eval.json`` I/O, tables;
* :mod:`.reference_logs` — ``TOFU_EVAL.json`` out, a reference retain log in as the oracle;
* :mod:`.lm_eval` — the lm-evaluation-harness hand-off; :mod:`.config` — :class:`EvalConfig`.
"""

from .config import PROTOCOLS, EvalConfig
from .engine import generate_answers
from .reference_logs import REFERENCE_FILE, OracleView, load_reference_logs, to_reference_logs
from .aggregates import aggregate
from .report import EVAL_FILE, compare_table, format_summary, load_eval, load_oracle, save_eval
from .runner import ROLES, default_roles, evaluate, evaluate_set, load_eval_sets

__all__ = ["EVAL_FILE", "PROTOCOLS", "REFERENCE_FILE", "ROLES", "EvalConfig", "OracleView", "aggregate",
           "compare_table", "default_roles", "evaluate", "evaluate_set", "format_summary", "generate_answers",
           "load_eval", "load_eval_sets", "load_oracle", "load_reference_logs", "save_eval", "to_reference_logs"]
