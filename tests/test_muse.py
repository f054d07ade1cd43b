"""MUSE: the adapter reads files in MUSE's schema (made here), and each number equals its formula on
what the model generated and scored."""

from __future__ import annotations

import json
import math

import pytest

from grin_unlearn.cli import main
from grin_unlearn.data.benchmarks import get_benchmark
from grin_unlearn.data.formatting import PromptFormat
from grin_unlearn.errors import UserInputError
from grin_unlearn.evaluation import EvalConfig, evaluate
from grin_unlearn.metrics import mia_auc, min_k_percent_score, privleak, rouge_scores

FMT = PromptFormat(max_length=96)


def _write(folder, name, rows):
    with open(folder / f"{name}.jsonl", "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


@pytest.fixture()
def muse_dir(tmp_path, micro_world):
    """A small MUSE-schema folder made from the micro world's texts."""
    facts = [r for r in micro_world["full"]]
    texts = [f"{r['question']} {r['answer']}" for r in facts]
    folder = tmp_path / "muse"
    folder.mkdir()
    _write(folder, "raw_forget", [{"text": t} for t in texts[:6]])
    _write(folder, "raw_retain1", [{"text": t} for t in texts[20:30]])
    _write(folder, "verbmem_forget", [{"prompt": r["question"], "gt": r["answer"]} for r in facts[:4]])
    _write(folder, "knowmem_forget_qa", [{"question": r["question"], "answer": r["answer"]} for r in facts[:3]])
    _write(folder, "knowmem_forget_qa_icl", [{"question": r["question"], "answer": r["answer"]} for r in facts[40:42]])
    _write(folder, "knowmem_retain_qa", [{"question": r["question"], "answer": r["answer"]} for r in facts[20:23]])
    _write(folder, "knowmem_retain_qa_icl", [{"question": r["question"], "answer": r["answer"]} for r in facts[42:44]])
    _write(folder, "privleak_forget", [{"text": t} for t in texts[:5]])
    _write(folder, "privleak_holdout", [{"text": t} for t in texts[60:65]])
    return folder


def test_adapter_reads_the_muse_schema(muse_dir):
    muse = get_benchmark("muse")
    training = muse.training_sets(str(muse_dir), "news[:4]")
    assert len(training.forget) == 4 and len(training.retain) == 10 and "text" in training.forget[0]
    sets = muse.eval_sets(str(muse_dir), "news")
    assert sets.roles == {"verbmem_forget": "verbmem", "knowmem_forget_qa": "knowmem_forget",
                          "knowmem_retain_qa": "knowmem_retain", "privleak_forget": "mia_forget",
                          "privleak_holdout": "mia_holdout"}
    icl = [json.loads(line) for line in (muse_dir / "knowmem_forget_qa_icl.jsonl").read_text().splitlines()]
    assert all(r["shots"] == [(s["question"], s["answer"]) for s in icl] for r in sets.sets["knowmem_forget_qa"])
    with pytest.raises(UserInputError, match="gt"):
        _write(muse_dir, "verbmem_forget", [{"prompt": "p", "answer": "a"}])
        muse.eval_sets(str(muse_dir), "news")


def test_few_shot_prompt_is_the_references_base_model_prompt(micro_tokenizer):
    shots = [("Who wrote it?", "Ann."), ("When?", "In 1990.")]
    ids = FMT.few_shot_prompt_ids(micro_tokenizer, shots, "Where?")
    text = "Question: Who wrote it?\nAnswer: Ann.\n\nQuestion: When?\nAnswer: In 1990.\n\nQuestion: Where?\nAnswer: "
    assert micro_tokenizer.decode(ids, skip_special_tokens=True) == micro_tokenizer.decode(
        micro_tokenizer(text)["input_ids"], skip_special_tokens=True)


def test_muse_numbers_equal_their_formulas(muse_dir, micro_tokenizer, eval_model):
    bundle = get_benchmark("muse").eval_sets(str(muse_dir), "news")
    result = evaluate(eval_model, micro_tokenizer, bundle.sets, bundle.roles, FMT, EvalConfig(batch_size=4))
    sets, aggregates = result["sets"], result["aggregates"]
    verbmem = sets["verbmem_forget"]["per_item"]
    want = [s["rougeL_f1"] for s in rouge_scores(verbmem["generation"], [r["gt"] for r in bundle.sets["verbmem_forget"]])]
    assert verbmem["rouge_l_f1"] == pytest.approx(want)
    assert aggregates["muse_verbmem_forget"] == pytest.approx(sum(want) / len(want))
    assert aggregates["muse_utility"] == sets["knowmem_retain_qa"]["metrics"]["rouge_l_f1"]
    forget, holdout = (sets[n]["per_item"]["mia_min_k"] for n in ("privleak_forget", "privleak_holdout"))
    auc = mia_auc(forget, holdout).value
    assert aggregates["muse_mia_auc"] == pytest.approx(auc)
    assert aggregates["muse_privleak"] == pytest.approx(privleak(auc, 0.5).value)
    # Against an oracle the reference AUC is the oracle's own MUSE AUC.
    from grin_unlearn.evaluation import aggregate
    assert aggregate(sets, oracle=result)["muse_privleak"] == pytest.approx(0.0, abs=1e-9)
    assert not math.isnan(aggregates["muse_knowmem_forget"])


def test_min_k_of_a_muse_text_is_the_formula_on_its_tokens(muse_dir, micro_tokenizer, eval_model):
    import torch

    bundle = get_benchmark("muse").eval_sets(str(muse_dir), "news")
    text = bundle.sets["privleak_forget"][0]["text"]
    result = evaluate(eval_model, micro_tokenizer, {"p": [{"text": text}], "h": [{"text": text}]},
                      {"p": "mia_forget", "h": "mia_holdout"}, FMT, EvalConfig())
    ids = [micro_tokenizer.bos_token_id] + micro_tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(eval_model(input_ids=torch.tensor([ids])).logits[0, :-1].double(), -1)
    token_logps = logp.gather(1, torch.tensor(ids[1:])[:, None]).squeeze(1).tolist()
    assert result["sets"]["p"]["per_item"]["mia_min_k"] == pytest.approx(
        min_k_percent_score([token_logps], 0.4).per_item, rel=1e-4)


def test_muse_on_the_command_line(muse_dir, micro_model_dir, tmp_path):
    code = main(["eval", "--model", str(micro_model_dir), "--benchmark", "muse", "--data", str(muse_dir),
                 "--out", str(tmp_path / "eval")])
    assert code == 0
    aggregates = json.loads((tmp_path / "eval" / "eval.json").read_text())["aggregates"]
    assert all(aggregates[k] is not None for k in ("muse_verbmem_forget", "muse_knowmem_forget", "muse_utility",
                                                    "muse_privleak"))
