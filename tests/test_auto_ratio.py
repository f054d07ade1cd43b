"""Automatic p (GRIN's gain/damage balance; Kneedle knee of the score-mass curve) and σ² (retain-loss
probe), and their record.

Formulas: :mod:`grin_unlearn.selection.auto_ratio` and :mod:`grin_unlearn.noise.auto_noise`.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from grin_unlearn.noise.auto_noise import probe_noise_var
from grin_unlearn.selection.auto_knee import knee_ratio, mass_curve
from grin_unlearn.selection.auto_ratio import balance_ratio, coverage_ratio
from grin_unlearn.cli import main
from grin_unlearn.config import NoiseConfig, SelectionConfig, config_from_mapping
from grin_unlearn.data.formatting import PadCollator, PromptFormat, encode_training_records
from grin_unlearn.errors import UserInputError
from grin_unlearn.models import pad_token_id
from grin_unlearn.scoring.gradients import batch_loss
from grin_unlearn.selection.top_fraction import select_top_fraction


def _brute_force_knee(scores: dict[str, torch.Tensor]) -> int:
    """argmax_k of d_k = y_k − x_k over the sorted curve (k = 0..N); the first maximum."""
    flat = torch.cat([s.reshape(-1) for s in scores.values()]).double().sort(descending=True).values
    n = flat.numel()
    y = torch.cat([torch.zeros(1, dtype=torch.float64), flat.cumsum(0) / flat.sum()])
    x = torch.arange(n + 1, dtype=torch.float64) / n
    return int((y - x).argmax())


def test_two_level_scores_put_the_knee_at_the_corner():
    """k = 137 weights score 5, the other 863 score 1 (over two tensors): the mass curve is two straight
    pieces meeting at x = 0.137, y = 685/1548, so the knee is exactly there."""
    high = torch.full((137,), 5.0)
    low = torch.ones(863)
    values = torch.cat([high, low])[torch.randperm(1000, generator=torch.Generator().manual_seed(0))]
    scores = {"a": values[:400].reshape(20, 20), "b": values[400:].reshape(30, 20)}
    knee = knee_ratio(scores)
    assert knee.selected == 137 and knee.ratio == pytest.approx(0.137)
    assert knee.mean_score == pytest.approx(1.548)
    assert knee.mass_at_knee == pytest.approx(685 / 1548)
    assert knee.distance == pytest.approx((685 / 1548 - 0.137) / math.sqrt(2))
    masks = select_top_fraction(scores, knee.ratio)  # the selection at p* is exactly the high group
    assert all(bool((masks[n] == (scores[n] == 5.0)).all()) for n in scores)


def test_exponential_scores_knee_at_one_over_e():
    """For Exp(1) scores the share above the mean is P(S > 1) = e^-1; 10^6 draws put it within 0.002."""
    generator = torch.Generator().manual_seed(1)
    scores = {"w": torch.empty(1000, 1000).exponential_(generator=generator)}
    assert knee_ratio(scores).ratio == pytest.approx(math.exp(-1), abs=2e-3)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 1e3, allow_nan=False, allow_infinity=False), min_size=2, max_size=60),
       st.integers(1, 3))
def test_knee_is_the_farthest_point_from_the_chord(values, pieces):
    """The closed form k* = #{s > mean} equals the brute-force argmax of y_k − x_k on the sorted curve."""
    tensor = torch.tensor(values, dtype=torch.float32)
    if bool((tensor == tensor[0]).all()):
        with pytest.raises(UserInputError, match="no knee"):
            knee_ratio({"w": tensor})
        return
    scores = {f"t{i}": chunk for i, chunk in enumerate(tensor.chunk(pieces))}
    knee = knee_ratio(scores)
    flat = torch.cat(list(scores.values())).double().sort(descending=True).values
    d = lambda k: float(flat[:k].sum() / flat.sum()) - k / flat.numel()  # noqa: E731
    assert d(knee.selected) == pytest.approx(d(_brute_force_knee(scores)), abs=1e-9)


def _grin_scores(g_f: dict, g_r: dict, eps: float) -> dict:
    return {name: g_f[name].abs() / (g_r[name].abs() + eps) for name in g_f}


def test_balance_cut_equals_a_hand_computation():
    """g_f = (3, 1, 2, 0.5), g_r = (1, −1, −4, 0.1), ε = 0: scores (3, 1, 0.5, 5), so the GRIN order is
    weights 3, 0, 1, 2. Gain |g_f| in that order: 0.5, 3, 1, 2 (total 6.5); damage F = (0.01, 1, 1, 16)
    (total 18.01). F(k) − D(k) over the prefixes: 0.0764, 0.4824, 0.5807, 0 → the best cut keeps 3 of 4
    weights, p = 0.75, with gain share 4.5/6.5 and damage share 2.01/18.01."""
    g_f = {"a": torch.tensor([3.0, 1.0]), "b": torch.tensor([2.0, 0.5])}
    g_r = {"a": torch.tensor([1.0, -1.0]), "b": torch.tensor([-4.0, 0.1])}
    fisher = {"a": torch.tensor([1.0, 1.0]), "b": torch.tensor([16.0, 0.01])}
    scores = _grin_scores(g_f, g_r, 0.0)
    found = balance_ratio(scores, g_f, fisher)
    assert found.selected == 3 and found.ratio == 0.75
    assert found.forget_gain_share == pytest.approx(4.5 / 6.5)
    assert found.retain_damage_share == pytest.approx(2.01 / 18.01)
    masks = select_top_fraction(scores, found.ratio)
    assert masks["a"].tolist() == [True, True] and masks["b"].tolist() == [False, True]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(-20, 20), st.integers(-20, 20), st.integers(0, 50)), min_size=2, max_size=50),
       st.integers(1, 3))
def test_balance_maximises_gain_share_minus_damage_share(triples, pieces):
    """Over every prefix of the weights sorted by GRIN score, none has a larger F − D than the balance's
    cut, the top-p mask it implies holds exactly the weights it counted, and the coverage cut is the
    smallest prefix holding the asked share of the forget gain. Integer gradients and ε = 1 keep
    distinct scores apart by far more than a bin (2^20 bins), so every cut between distinct scores is
    a candidate."""
    g_f_all = torch.tensor([float(a) for a, _, _ in triples], dtype=torch.float64)
    g_r_all = torch.tensor([float(b) for _, b, _ in triples], dtype=torch.float64)
    fisher_all = torch.tensor([float(c) for _, _, c in triples], dtype=torch.float64)
    eps = 1.0  # scores |a| / (|b| + 1) of integers <= 20: distinct ones differ by >= 1e-4 relative, >> a bin
    scores_all = g_f_all.abs() / (g_r_all.abs() + eps)
    if float(g_f_all.abs().sum()) == 0.0:
        with pytest.raises(UserInputError, match="zero everywhere"):
            balance_ratio({"w": scores_all}, {"w": g_f_all}, {"w": fisher_all})
        return
    split = lambda t: {f"t{i}": c for i, c in enumerate(t.chunk(pieces))}  # noqa: E731
    gain, damage = g_f_all.abs(), fisher_all
    order = scores_all.sort(descending=True, stable=True).indices
    cuts = [k for k in range(1, len(triples) + 1) if k == len(triples) or scores_all[order[k]] < scores_all[order[k - 1]]]
    damage_share = (lambda k: float(damage[order[:k]].sum() / damage.sum())) if float(damage.sum()) > 0 else (lambda k: 0.0)
    best = max(float(gain[order[:k]].sum() / gain.sum()) - damage_share(k) for k in cuts)
    found = balance_ratio(split(scores_all), split(g_f_all), split(fisher_all), bins=1 << 20)
    assert found.forget_gain_share - found.retain_damage_share == pytest.approx(best, abs=1e-9)
    assert found.selected in cuts
    masks = select_top_fraction(split(scores_all), found.ratio)
    assert sum(int(m.sum()) for m in masks.values()) == found.selected
    for share in (0.5, 0.9, 1.0):  # coverage: the smallest cut holding the share of Σ |g_f|
        want = min(k for k in cuts if float(gain[order[:k]].sum() / gain.sum()) >= share - 1e-12)
        assert coverage_ratio(split(scores_all), split(g_f_all), share, bins=1 << 20).selected == want


def test_coverage_takes_the_smallest_top_set_holding_the_share():
    """The weights of the hand computation above in GRIN order (3, 0, 1, 2) hold forget gain |g_f| =
    0.5, 3, 1, 2 of 6.5: cumulative shares 1/13, 7/13, 9/13, 1. A share of 0.5 needs the top 2 weights,
    0.6 the top 3, 0.7 all 4; exactly 7/13 needs only the top 2."""
    g_f = {"a": torch.tensor([3.0, 1.0]), "b": torch.tensor([2.0, 0.5])}
    g_r = {"a": torch.tensor([1.0, -1.0]), "b": torch.tensor([-4.0, 0.1])}
    scores = _grin_scores(g_f, g_r, 0.0)
    for share, selected in ((0.5, 2), (7 / 13, 2), (0.6, 3), (0.7, 4), (1.0, 4)):
        found = coverage_ratio(scores, g_f, share)
        assert found.selected == selected and found.ratio == selected / 4, share
        assert found.forget_gain_share >= share - 1e-12
    assert coverage_ratio(scores, g_f, 0.6).forget_gain_share == pytest.approx(9 / 13)
    with pytest.raises(UserInputError, match="coverage share"):
        coverage_ratio(scores, g_f, 1.5)
    with pytest.raises(UserInputError, match="forget gradients"):
        coverage_ratio(scores, None, 0.9)


def test_balance_rejects_missing_or_unusable_gradients():
    scores = {"w": torch.ones(3)}
    with pytest.raises(UserInputError, match="forget gradients"):
        balance_ratio(scores, None, {"w": torch.ones(3)})
    with pytest.raises(UserInputError, match="retain squared gradients"):
        balance_ratio(scores, {"w": torch.ones(3)}, {"v": torch.ones(3)})
    with pytest.raises(UserInputError, match="NaN or inf"):
        balance_ratio(scores, {"w": torch.tensor([1.0, float("inf"), 0.0])}, {"w": torch.ones(3)})
    with pytest.raises(UserInputError, match=">= 0"):
        balance_ratio({"w": torch.tensor([1.0, -2.0, 0.0])}, {"w": torch.ones(3)}, {"w": torch.ones(3)})


def test_mass_curve_is_exact_and_rejects_bad_scores():
    scores = {"w": torch.tensor([4.0, 3.0, 2.0, 1.0, 0.0])}
    curve, sampled = mass_curve(scores, points=(0.2, 0.4, 1.0))
    assert not sampled and curve == [[0.2, 0.4], [0.4, 0.7], [1.0, 1.0]]
    with pytest.raises(UserInputError, match="no knee"):
        knee_ratio({"w": torch.ones(10)})
    with pytest.raises(UserInputError, match=">= 0"):
        knee_ratio({"w": torch.tensor([1.0, -2.0, 3.0])})
    with pytest.raises(UserInputError, match="NaN"):
        knee_ratio({"w": torch.tensor([1.0, float("nan")])})


def test_configs_accept_auto_and_reject_other_words():
    assert SelectionConfig(ratio="auto").ratio == "auto"
    assert NoiseConfig(noise_var="AUTO").noise_var == "auto"
    assert config_from_mapping({"selection": {"ratio": "0.25"}}).selection.ratio == 0.25
    with pytest.raises(UserInputError, match="--ratio"):
        SelectionConfig(ratio="half")
    with pytest.raises(UserInputError, match="--noise-var"):
        NoiseConfig(noise_var="lots")


def _fit(model, tokenizer, records, steps=60):
    """A few Adam steps on ``records`` so the blocks hold knowledge that noise can damage."""
    examples = encode_training_records(tokenizer, records[:64], PromptFormat(max_length=48))
    batch = PadCollator(pad_token_id(tokenizer))(examples)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        batch_loss(model, batch).backward()
        optimizer.step()
    return model


def test_noise_probe_picks_the_largest_tolerated_variance(micro_model, micro_tokenizer, micro_world):
    """The chosen σ² keeps the retain NLL within L0 + τ, a bracket point just above it does not, and
    the weights come back bit-identical."""
    _fit(micro_model, micro_tokenizer, micro_world["retain90"])
    params = {n: p for n, p in micro_model.named_parameters() if "layers" in n and p.dim() == 2}
    masks = select_top_fraction({n: torch.rand(p.shape, generator=torch.Generator().manual_seed(0))
                                 for n, p in params.items()}, 0.5)
    before = {n: p.detach().clone() for n, p in micro_model.named_parameters()}
    result = probe_noise_var(micro_model, micro_tokenizer, micro_world["retain90"], params, masks,
                             mode="absolute", seed=3, tolerance=0.05)
    assert all(torch.equal(p, before[n]) for n, p in micro_model.named_parameters())
    bound = result.base_loss + result.tolerance
    losses = dict((v, loss) for v, loss in result.points)
    assert 0 < result.noise_var < 1.0 and losses[result.noise_var] <= bound
    above = [v for v, loss in result.points if v > result.noise_var]
    assert above and losses[min(above)] > bound  # the bisection bracket's upper end was not tolerated
    assert min(above) / result.noise_var < 10 ** (8.0 / 2 ** 10) * 1.001  # 10 halvings of 8 decades
    generous = probe_noise_var(micro_model, micro_tokenizer, micro_world["retain90"], params, masks,
                               mode="absolute", seed=3, tolerance=100.0)
    assert generous.noise_var == 1.0  # the whole range is tolerated: the top of it


def _unlearn_auto(out, model_dir, world_dir, *extra) -> int:
    return main(["unlearn", "--model", str(model_dir), "--data", str(world_dir), "--forget", "forget10",
                 "--retain", "retain90", "--out", str(out), "--epochs", "1", "--batch-size", "8",
                 "--ratio", "auto", "--max-length", "48", "--score-batch-size", "16", *extra])


def test_auto_values_land_in_config_json(tmp_path, micro_model_dir, micro_world_dir):
    out = tmp_path / "run"
    assert _unlearn_auto(out, micro_model_dir, micro_world_dir, "--noise-var", "auto", "--noise-mode", "relative") == 0
    saved = json.loads((out / "config.json").read_text())
    ratio, noise = saved["auto"]["ratio"], saved["auto"]["noise_var"]
    assert ratio["requested"] == "auto" and 0 < ratio["ratio"] < 1
    assert saved["config"]["selection"]["ratio"] == ratio["ratio"]  # the p that was used
    assert ratio["selected"] == round(ratio["ratio"] * ratio["weights"])
    density = json.loads((out / "density.json").read_text())["overall"]
    assert ratio["method"].startswith("coverage")  # the default rule of the default scorer, GRIN
    assert ratio["share"] == 0.95 and ratio["forget_gain_share"] >= 0.95
    assert density["selected"] == ratio["selected"]  # the mask holds exactly the weights above the cut
    assert saved["config"]["noise"]["noise_var"] == noise["noise_var"] and noise["probe"]
    assert noise["noise_mode"] == "relative" and noise["retain_nll_before_noise"] > 0
    with pytest.raises(SystemExit) as exit_info:  # argparse rejects the word before anything runs
        main(["unlearn", "--model", str(micro_model_dir), "--data", str(micro_world_dir), "--out",
              str(tmp_path / "bad"), "--ratio", "most"])
    assert exit_info.value.code == 2 and not (tmp_path / "bad").exists()


def test_auto_rules_other_than_the_default(tmp_path, micro_model_dir, micro_world_dir):
    """--auto-rule balance records its curve and cut; a smaller --auto-share takes fewer weights; a rule
    the scorer cannot serve is refused with exit 2 before anything is written."""
    out = tmp_path / "balance"
    assert _unlearn_auto(out, micro_model_dir, micro_world_dir, "--auto-rule", "balance") == 0
    ratio = json.loads((out / "config.json").read_text())["auto"]["ratio"]
    assert ratio["method"].startswith("balance")
    gains = [point[1] - point[2] for point in ratio["balance_curve"]]  # F − D at the recorded cuts
    assert ratio["forget_gain_share"] - ratio["retain_damage_share"] >= max(gains) - 1e-9
    assert json.loads((out / "density.json").read_text())["overall"]["selected"] == ratio["selected"]
    shares = {}
    for share in ("0.5", "0.95"):
        assert _unlearn_auto(tmp_path / share, micro_model_dir, micro_world_dir, "--auto-share", share) == 0
        shares[share] = json.loads((tmp_path / share / "config.json").read_text())["auto"]["ratio"]
        assert shares[share]["forget_gain_share"] >= float(share)
    assert shares["0.5"]["ratio"] < shares["0.95"]["ratio"]
    for bad in (["--scorer", "magnitude", "--auto-rule", "coverage"], ["--scorer", "forget-grad", "--auto-rule", "balance"],
                ["--auto-rule", "elbow"], ["--auto-share", "1.5"]):
        assert _unlearn_auto(tmp_path / "bad", micro_model_dir, micro_world_dir, *bad) == 2, bad
        assert not (tmp_path / "bad").exists()
