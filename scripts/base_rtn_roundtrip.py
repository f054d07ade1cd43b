"""How far an RTN round trip moves the real model's base, which was itself dequantized from Q4_1.

    python scripts/base_rtn_roundtrip.py            # prints a markdown table

SmolLM2-135M-Instruct comes from a GGUF whose linear layers are Q4_1: per block of 32 input weights,
``w = d·q + m`` with ``q`` in 0…15. So the fp32 base already sits on a 4-bit grid with groups of 32,
the grid that the quantization attack's 4-bit RTN (groups of 32, asymmetric, rounded zero point) uses
too. For each attack setting this prints, over the quantized weights (every 2-D weight inside the
transformer blocks): the share whose value changes at all (``|ŵ − w| > 1e-6·s``), the share that
lands more than half a step away (another level of the grid), and the mean and largest ``|ŵ − w| / s``.
"""

from __future__ import annotations

import torch

from grin_unlearn.evaluation.attacks.quantize import QuantizeConfig, rtn
from grin_unlearn.models import load_model
from grin_unlearn.models.pretrained import pretrained_folder
from grin_unlearn.scoring import eligible_parameters

SETTINGS = (QuantizeConfig(4, 32), QuantizeConfig(4, None), QuantizeConfig(8, 32), QuantizeConfig(8, None))


@torch.no_grad()
def round_trip(model, config: QuantizeConfig) -> dict:
    moved = other_level = total = 0
    error_sum, worst = 0.0, 0.0
    for param in eligible_parameters(model).values():
        if param.dim() != 2:
            continue
        new, step = rtn(param.data, config.bits, config.group_size)
        gap = (new.float() - param.data.float()).abs()
        in_steps = torch.where(step > 0, gap / step.clamp_min(1e-30), torch.zeros_like(gap))
        moved += int((in_steps > 1e-6).sum())
        other_level += int((in_steps > 0.5).sum())
        error_sum += float(in_steps.sum())
        worst = max(worst, float(in_steps.max()))
        total += gap.numel()
    return {"label": config.label, "weights": total, "moved": moved / total, "other_level": other_level / total,
            "mean_steps": error_sum / total, "max_steps": worst}


def main() -> None:
    model = load_model(str(pretrained_folder("smollm2-135m")), dtype="float32", device="cpu")
    print("| RTN setting | weights | value changes | another level (> s/2) | mean \\|ŵ − w\\| / s | max |")
    print("|---|---|---|---|---|---|")
    for config in SETTINGS:
        r = round_trip(model, config)
        print(f"| {r['label']} | {r['weights']:,} | {r['moved']:.2%} | {r['other_level']:.3%} | "
              f"{r['mean_steps']:.3f} | {r['max_steps']:.3f} |")


if __name__ == "__main__":
    main()
