"""The GradNorm membership attack's backward passes: per example, the gradient norm of each parameter
tensor (:func:`~grin_unlearn.metrics.gradnorm.gradnorm_score` turns them into a score). Run only when
an evaluation asks for ``--mia-gradnorm``: one backward pass per example."""

from __future__ import annotations

import torch

from ..logprobs import token_logprobs
from ..models import model_device


def gradient_norms(model, examples: list[dict], p: float = 2.0) -> list[list[float]]:
    """Per encoded example, ``‖∇_θ L‖_p`` of each parameter tensor that gets a gradient, where
    ``L = −(1/T) Σ_t log π(y_t|·)`` over its labelled tokens but the last (the appended EOS); the
    GradNorm attack's input (:func:`~grin_unlearn.metrics.gradnorm.gradnorm_score`). One example per
    backward pass; ``torch.autograd.grad`` leaves every ``.grad`` as it was. An example with no token
    left gets no norm."""
    device = model_device(model)
    params = [q for q in model.parameters() if q.requires_grad]
    out = []
    with torch.enable_grad():
        for example in examples:
            ids = torch.tensor([example["input_ids"]], device=device)
            labels = torch.tensor([example["labels"]], device=device)
            logp, mask = token_logprobs(model(input_ids=ids, use_cache=False).logits, labels)  # (1, T-1)
            kept = mask[0].nonzero().squeeze(1)[:-1]  # the labelled positions but the last
            if kept.numel() == 0:
                out.append([])
                continue
            loss = -logp[0, kept].mean()
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            out.append([float(torch.linalg.vector_norm(g.float(), ord=p)) for g in grads if g is not None])
    return out
