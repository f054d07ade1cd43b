"""``UnlearningTrainer``: a ``transformers.Trainer`` that wires batches, the objective and the mask.

Batches come from the dataset's :class:`~grin_unlearn.data.unlearning.PairedSampler` (each forget
example with a retain example drawn without replacement from the whole retain set, resumable).
Per step: one forward pass over the forget, refusal and retain examples the objective needs (padded
together), :func:`sequence_logprobs` per group, reference log-probs looked up from a precomputed table
(or a live reference model for the KL retain term), then :func:`combine`. An objective that reads
activations (RMU) gets the steered layer's output from the same forward pass (a forward hook), and
the frozen model's on the retain examples. A masked run passes the
optimizer of :func:`grin_unlearn.training.masked_optim.make_masked_optimizer` as ``optimizers=(optimizer, None)``,
like any other ``transformers.Trainer``, so unselected weights never move.
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import torch
from transformers import Trainer

from ..logprobs import IGNORE_INDEX, answer_kl, logits_from_first_answer, sequence_logprobs
from .activations import HiddenStates, capture_output
from .objectives import ObjectiveHyperparams, ObjectiveInputs, ObjectiveSpec, combine
from .reference import lookup


class NonFiniteLossError(RuntimeError):
    """The unlearning loss became NaN or inf; the run stops and keeps its last checkpoint."""


def _pad_to(tensor: torch.Tensor, width: int, value: int) -> torch.Tensor:
    return torch.nn.functional.pad(tensor, (0, width - tensor.shape[1]), value=value)


class UnlearningTrainer(Trainer):
    def __init__(self, *args, objective: ObjectiveSpec, hyperparams: ObjectiveHyperparams,
                 reference: dict | None = None, ref_model=None, pad_id: int = 0, hidden_layer=None,
                 ref_hidden_layer=None, control: torch.Tensor | None = None, **kwargs):
        # No `processing_class`: transformers < 4.46 calls it `tokenizer`; the Trainer needs only the pad id.
        super().__init__(*args, **kwargs)
        self.pad_id = pad_id
        self.objective, self.hyperparams = objective, hyperparams
        self.reference, self.ref_model = reference or {}, ref_model
        # The steered layer of the model and of the frozen reference, and the steering vector (RMU);
        # not `self.control`: the Trainer's own TrainerControl lives there.
        self.hidden_layer, self.ref_hidden_layer, self.steering_vector = hidden_layer, ref_hidden_layer, control
        self.needed = objective.required_inputs(hyperparams)
        self.groups = [g for g in ("forget", "refusal", "retain")
                       if g in self.needed or (g == "retain" and {"retain_kl", "retain_hidden"} & set(self.needed))]
        self.model_accepts_loss_kwargs = False  # our loss is already a per-batch mean
        self._term_sums: dict[str, float] = {}
        self._term_steps = 0

    def _get_train_sampler(self, *args, **kwargs):
        """The dataset's own :class:`~grin_unlearn.data.unlearning.PairedSampler` instead of a RandomSampler."""
        sampler = getattr(self.train_dataset, "sampler", None)
        return sampler() if callable(sampler) else super()._get_train_sampler(*args, **kwargs)

    def _load_rng_state(self, checkpoint):
        # transformers < 4.50 reads the RNG file with torch.load's default, which torch >= 2.6 made
        # weights_only=True; the file holds numpy's RNG state. Allow exactly those numpy types, only here.
        import numpy as np

        multiarray = (getattr(np, "_core", None) or np.core).multiarray  # numpy 2 renamed core to _core
        with torch.serialization.safe_globals([multiarray._reconstruct, np.ndarray, np.dtype,
                                               type(np.dtype(np.uint32))]):
            return super()._load_rng_state(checkpoint)

    def _forward_groups(self, model, inputs: dict) -> dict:
        """One forward over the needed groups; returns ``{group: (logits (B,T,V), labels (B,T))}`` and,
        when the objective reads activations, ``{"<group>_hidden": HiddenStates}`` too."""
        width = max(inputs[g]["input_ids"].shape[1] for g in self.groups)
        ids = torch.cat([_pad_to(inputs[g]["input_ids"], width, self.pad_id) for g in self.groups])
        attention = torch.cat([_pad_to(inputs[g]["attention_mask"], width, 0) for g in self.groups])
        # The LM head only from the position before the batch's first labelled token on: the prompt's
        # rows of logits (and of their gradient) are never read. Labels are cut to the same columns.
        offset, keep = logits_from_first_answer(model, [inputs[g]["labels"] for g in self.groups], width)
        with capture_output(self.hidden_layer) if self.hidden_layer is not None else nullcontext([]) as captured:
            logits = model(input_ids=ids, attention_mask=attention, **keep).logits  # (G·B, T - offset, V)
        out, start = {}, 0
        for g in self.groups:
            rows, cols = inputs[g]["input_ids"].shape
            out[g] = (logits[start:start + rows, :cols - offset], inputs[g]["labels"][:, offset:])
            if captured:  # the steered layer's output (G·B, T, d), first call (a checkpointed layer reruns)
                out[f"{g}_hidden"] = HiddenStates(captured[0][start:start + rows, :cols],
                                                  inputs[g]["labels"] != IGNORE_INDEX)
            start += rows
        return out

    def _reference_hidden(self, batch: dict) -> HiddenStates:
        """The frozen reference's activations at the steered layer on ``batch``."""
        with torch.no_grad(), capture_output(self.ref_hidden_layer) as captured:
            self.ref_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return HiddenStates(captured[0], batch["labels"] != IGNORE_INDEX)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # The weights moved at the last optimizer step: no bf16 copy cast before it may be reused (a
        # caller's torch.autocast block around the whole run caches them until it exits; precision.py).
        torch.clear_autocast_cache()
        outputs = self._forward_groups(model, inputs)
        stats = {g: sequence_logprobs(*outputs[g]) for g in self.groups}
        device = outputs["forget"][0].device
        retain_kl = None
        if "retain_kl" in self.needed:
            retain = inputs["retain"]
            with torch.no_grad():
                ref_logits = self.ref_model(input_ids=retain["input_ids"], attention_mask=retain["attention_mask"]).logits
            cut = retain["labels"].shape[1] - outputs["retain"][1].shape[1]  # the columns _forward_groups left out
            retain_kl = answer_kl(outputs["retain"][0], ref_logits[:, cut:], outputs["retain"][1])
        ref = {g: lookup(self.reference[g], inputs["index"], device) for g in self.reference}
        steering = {}
        if "forget_hidden" in self.needed:
            steering = {"forget_hidden": outputs["forget_hidden"], "control": self.steering_vector.to(device)}
        if "retain_hidden" in self.needed:
            steering.update(retain_hidden=outputs["retain_hidden"],
                            ref_retain_hidden=self._reference_hidden(inputs["retain"]))
        objective_inputs = ObjectiveInputs(
            forget=stats["forget"], retain=stats.get("retain"), refusal=stats.get("refusal"),
            ref_forget=ref.get("forget"), ref_refusal=ref.get("refusal"), retain_kl=retain_kl, **steering)
        loss = combine(self.objective, objective_inputs, self.hyperparams)
        if not math.isfinite(loss.loss.item()):
            raise NonFiniteLossError(f"the {self.objective.name} loss became {loss.loss.item()} at step "
                                     f"{self.state.global_step + 1}")  # the optimizer step being computed
        self._accumulate_terms(loss)
        return (loss.loss, outputs) if return_outputs else loss.loss

    def _accumulate_terms(self, loss) -> None:
        for name in ("forget_loss", "retain_loss"):
            self._term_sums[name] = self._term_sums.get(name, 0.0) + float(getattr(loss, name).detach())
        self._term_steps += 1

    def log(self, logs: dict, *args, **kwargs) -> None:
        if self._term_steps:
            logs.update({k: round(v / self._term_steps, 5) for k, v in self._term_sums.items()})
            self._term_sums, self._term_steps = {}, 0
        super().log(logs, *args, **kwargs)
