"""Hand-off to EleutherAI's lm-evaluation-harness (WMDP, MMLU, ... as its tasks define them).

``grin-unlearn eval --lm-eval-tasks wmdp,mmlu`` runs ``lm_eval.simple_evaluate`` on the model folder
with the ``hf`` backend, as the ``lm_eval`` CLI would, and keeps its JSON-ready summary.
"""

from __future__ import annotations

import json

from ..errors import UserInputError

LM_EVAL_FILE = "lm_eval.json"


def lm_eval_tasks(text: str) -> list[str]:
    """The task names of ``--lm-eval-tasks``; a clear error when lm-evaluation-harness is not installed."""
    tasks = [t.strip() for t in text.split(",") if t.strip()]
    if not tasks:
        raise UserInputError(f"--lm-eval-tasks: expected comma-separated task names (e.g. wmdp,mmlu), got {text!r}")
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        raise UserInputError("--lm-eval-tasks: lm-evaluation-harness is not installed; run "
                             "`pip install grin-unlearn[lm-eval]` (or `pip install lm-eval`), or run "
                             "`lm_eval --model hf --model_args pretrained=DIR --tasks ...` yourself") from None
    return tasks


def run_lm_eval(model: str, tasks: list[str], dtype: str, batch_size: int, limit: int | None,
                trust_remote_code: bool) -> dict:
    """``lm_eval.simple_evaluate`` on the model folder (the ``hf`` backend, as the ``lm_eval`` CLI would).

    ``limit`` (``--max-items``) caps the examples per task. Returns the JSON-ready results, task
    versions, n-shot and the call's settings (no per-sample logs).
    """
    import lm_eval
    import torch

    model_args = f"pretrained={model},dtype={dtype}" + (",trust_remote_code=True" if trust_remote_code else "")
    output = lm_eval.simple_evaluate(model="hf", model_args=model_args, tasks=tasks, batch_size=batch_size,
                                     limit=limit, device="cuda" if torch.cuda.is_available() else "cpu",
                                     log_samples=False)
    keep = {key: (output or {}).get(key) for key in ("results", "groups", "versions", "n-shot")}
    keep["settings"] = {"model": model, "model_args": model_args, "tasks": tasks, "batch_size": batch_size,
                        "limit": limit}
    return json.loads(json.dumps(keep, default=str))
