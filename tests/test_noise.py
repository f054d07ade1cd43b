"""Tests for grin_unlearn.noise.injection.inject_noise."""

from __future__ import annotations

import math

import pytest
import torch

from grin_unlearn.errors import UserInputError
from grin_unlearn.noise.injection import NOISE_MODES, inject_noise


def _params(seed: int = 0, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "w1": torch.randn(200, 250, generator=gen).to(dtype),  # 50,000 entries
        "w2": (torch.randn(300, 200, generator=gen) * 5).to(dtype),  # 60,000 entries, std 5
        "w3": torch.randn(10, generator=gen).to(dtype),
    }


def _masks(params: dict[str, torch.Tensor], fraction: float, seed: int = 1) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {n: torch.rand(p.shape, generator=gen) < fraction for n, p in params.items()}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_only_masked_entries_change(dtype):
    params = _params(dtype=dtype)
    before = {n: p.clone() for n, p in params.items()}
    masks = _masks(params, 0.3)
    del masks["w3"]  # a tensor missing from masks is untouched
    inject_noise(params, masks, variance=0.01, seed=3)
    bits = torch.int32 if dtype == torch.float32 else torch.int16
    assert torch.equal(params["w3"].view(bits), before["w3"].view(bits))
    for name, mask in masks.items():
        # Unmasked entries are bit-identical (compare bit patterns, not values).
        assert torch.equal(params[name][~mask].view(bits), before[name][~mask].view(bits))
        changed = params[name][mask] != before[name][mask]
        assert changed.float().mean() > 0.9  # almost every masked entry moved


def test_realised_variance_matches_request():
    """Sum of squares of n i.i.d. N(0, s^2) draws is s^2 * chi2(n); chi2(n) has mean n, std sqrt(2n).

    With n ~ 1e5 masked entries the ratio (realised var / requested var) lies within 1 +- 6*sqrt(2/n)
    (6 sigma, about 1 +- 0.027) except with negligible probability; the seed is fixed anyway.
    """
    params = {"w": torch.zeros(400, 400)}
    masks = {"w": torch.rand(400, 400, generator=torch.Generator().manual_seed(0)) < 0.6}
    n = int(masks["w"].sum())
    variance = 0.04
    summary = inject_noise(params, masks, variance=variance, seed=11)
    realised_var = float(params["w"][masks["w"]].double().square().mean())
    assert summary["perturbed"] == n and summary["tensors"] == 1
    assert abs(realised_var / variance - 1) < 6 * math.sqrt(2 / n)
    assert summary["realised_std"] == pytest.approx(math.sqrt(realised_var), rel=1e-6)
    assert abs(float(params["w"][masks["w"]].mean())) < 6 * math.sqrt(variance / n)  # mean 0


def test_same_seed_same_noise_different_seed_different():
    runs = []
    for seed in (5, 5, 6):
        params = _params()
        inject_noise(params, _masks(params, 0.5), variance=0.1, seed=seed)
        runs.append(params)
    assert all(torch.equal(runs[0][n], runs[1][n]) for n in runs[0])
    assert not torch.equal(runs[0]["w1"], runs[2]["w1"])


def test_noise_for_a_tensor_does_not_depend_on_the_others():
    full = _params()
    masks = _masks(full, 0.5)
    alone = {"w2": full["w2"].clone()}
    inject_noise(full, masks, variance=0.1, seed=2)
    inject_noise(alone, {"w2": masks["w2"]}, variance=0.1, seed=2)
    assert torch.equal(full["w2"], alone["w2"])


def test_parameters_in_place_and_no_grad():
    layer = torch.nn.Linear(50, 40)
    weight_before = layer.weight.detach().clone()
    params = dict(layer.named_parameters())
    mask = torch.zeros(40, 50, dtype=torch.bool)
    mask[:, :10] = True
    summary = inject_noise(params, {"weight": mask}, variance=1.0, seed=0)
    assert summary["perturbed"] == 400
    assert layer.weight.grad is None and layer.weight.requires_grad
    assert torch.equal(layer.weight[:, 10:], weight_before[:, 10:])
    assert not torch.equal(layer.weight[:, :10], weight_before[:, :10])


def test_relative_mode_scales_with_tensor_std():
    """sigma_t = sqrt(variance) * std(theta_t): w2 (std 5) gets ~5x the noise of w1 (std 1)."""
    params = _params()
    before = {n: p.clone() for n, p in params.items()}
    masks = _masks(params, 0.5)
    inject_noise(params, masks, variance=0.01, mode="relative", seed=4)
    for name, expected_std in (("w1", 0.1 * float(before["w1"].std())), ("w2", 0.1 * float(before["w2"].std()))):
        delta = (params[name] - before[name])[masks[name]]
        assert float(delta.std()) == pytest.approx(expected_std, rel=0.05)
    ratio = float((params["w2"] - before["w2"]).std()) / float((params["w1"] - before["w1"]).std())
    assert ratio == pytest.approx(5.0, rel=0.1)


def test_zero_variance_is_a_no_op():
    params = _params()
    before = {n: p.clone() for n, p in params.items()}
    summary = inject_noise(params, _masks(params, 0.5), variance=0.0)
    assert summary["perturbed"] == 0 and summary["realised_std"] == 0.0
    assert all(torch.equal(params[n], before[n]) for n in params)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"variance": -0.1}, "variance"),
        ({"variance": float("nan")}, "variance"),
        ({"variance": "0.1"}, "variance"),
        ({"variance": 0.1, "mode": "gaussian"}, "absolute, relative"),
        ({"variance": 0.1, "seed": 1.5}, "seed"),
    ],
)
def test_bad_inputs_raise(kwargs, match):
    params = _params()
    with pytest.raises(UserInputError, match=match):
        inject_noise(params, _masks(params, 0.5), **kwargs)


def test_bad_masks_raise():
    params = _params()
    with pytest.raises(UserInputError, match="'nope'"):
        inject_noise(params, {"nope": torch.ones(3, dtype=torch.bool)}, variance=0.1)
    with pytest.raises(UserInputError, match="'w3'.*shape"):
        inject_noise(params, {"w3": torch.ones(11, dtype=torch.bool)}, variance=0.1)
    with pytest.raises(UserInputError, match="'w3'.*bool"):
        inject_noise(params, {"w3": torch.ones(10)}, variance=0.1)


def test_modes_are_listed():
    assert NOISE_MODES == ("absolute", "relative")
