"""Tests for grin_unlearn.evaluation.tofu and .engine: every per-item TOFU number against a deliberately
naive transcription of the reference implementation's code path (one sequence at a time, no batching)."""

import copy
import math
import zlib

import pytest
import torch
import torch.nn.functional as F

from grin_unlearn.data.formatting import PadCollator, PromptFormat, encode_records
from grin_unlearn.evaluation import EvalConfig, evaluate, evaluate_set
from grin_unlearn.evaluation.engine import cut_generation, generate_texts, score_examples
from grin_unlearn.logprobs import IGNORE_INDEX

ROLES = {"forget10": "forget", "retain90": "retain", "holdout": "holdout", "world_facts": "world_facts"}
FAST = EvalConfig(max_new_tokens=6, batch_size=16, max_items=6)


@pytest.fixture(scope="module")
def result(eval_model, micro_tokenizer, micro_world):
    return evaluate(eval_model, micro_tokenizer, {name: micro_world[name] for name in ROLES}, ROLES, config=FAST)


def reference_item(eval_model, micro_tokenizer, question, answer, k=0.4):
    """open-unlearning, one item: preprocess_chat_instance, evaluate_probability (avg_loss),
    tokenwise_logprobs / tokenwise_vocab_logprobs (last labelled token dropped), Min-K, ES, zlib."""
    prompt = "Question: " + question + "\n" + "Answer: "
    ids = micro_tokenizer(prompt + answer, add_special_tokens=True, max_length=512, truncation=True)["input_ids"]
    prompt_ids = micro_tokenizer(prompt, add_special_tokens=True, max_length=512, truncation=True)["input_ids"]
    if ids[-1] != micro_tokenizer.eos_token_id:
        ids += [micro_tokenizer.eos_token_id]
    labels = torch.tensor([[IGNORE_INDEX] * len(prompt_ids) + ids[len(prompt_ids):]])
    input_ids = torch.tensor([ids])
    with torch.no_grad():
        logits = eval_model(input_ids=input_ids).logits
    losses = F.cross_entropy(logits[:, :-1].transpose(-1, -2), labels[:, 1:], ignore_index=IGNORE_INDEX,
                             reduction="none").sum(-1)
    avg_loss = (losses / (labels != IGNORE_INDEX).sum(-1)).item()
    log_probs = F.log_softmax(logits, dim=-1)[:, :-1]
    target = torch.gather(log_probs, 2, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)[0]
    actual = (labels[0] != IGNORE_INDEX).nonzero(as_tuple=True)[0][:-1]
    start, end = actual[0].item(), actual[-1].item()
    token_lp = target[start - 1:end].tolist()
    lowest = sorted(token_lp)[:max(1, int(len(token_lp) * k))]
    min_k = -sum(lowest) / len(lowest)
    preds, gold = log_probs[0, start - 1:end].argmax(-1), labels[0][actual]
    for kk in range(len(gold)):
        if torch.equal(preds[kk:], gold[kk:]):
            break
    es = 1 - kk / len(gold)
    text = micro_tokenizer.decode(labels[0][labels[0] != IGNORE_INDEX].tolist(), skip_special_tokens=True)
    return {"avg_loss": avg_loss, "min_k": min_k, "es": es, "zlib": avg_loss / len(zlib.compress(text.encode("utf-8")))}


def test_per_item_numbers_equal_the_reference_code_path(eval_model, micro_tokenizer, micro_world, result):
    forget = result["sets"]["forget10"]["per_item"]
    for i, record in enumerate(micro_world["forget10"][:6]):
        ref = reference_item(eval_model, micro_tokenizer, record["question"], record["answer"])
        assert forget["answer_loss"][i] == pytest.approx(ref["avg_loss"], rel=1e-5)
        assert forget["answer_probability"][i] == pytest.approx(math.exp(-ref["avg_loss"]), rel=1e-5)
        assert forget["mia_loss"][i] == pytest.approx(ref["avg_loss"], rel=1e-5)
        assert forget["mia_min_k"][i] == pytest.approx(ref["min_k"], rel=1e-5)
        assert forget["mia_zlib"][i] == pytest.approx(ref["zlib"], rel=1e-5)
        assert forget["extraction_strength"][i] == pytest.approx(ref["es"])
        para = reference_item(eval_model, micro_tokenizer, record["question"], record["paraphrased_answer"])["avg_loss"]
        pert = [reference_item(eval_model, micro_tokenizer, record["question"], p)["avg_loss"]
                for p in record["perturbed_answer"]]
        ratio = math.exp(-sum(pert) / len(pert)) / (math.exp(-para) + 1e-10)
        assert forget["truth_ratio"][i] == pytest.approx(ratio, rel=1e-5)
    score = sum(min(r, 1 / (r + 1e-10)) for r in forget["truth_ratio"]) / 6
    assert result["sets"]["forget10"]["metrics"]["truth_ratio"] == pytest.approx(score, rel=1e-9)


def test_world_facts_use_the_answer_and_normalise_over_the_options(eval_model, micro_tokenizer, micro_world, result):
    """Real Authors / World Facts: truth ratio of the answer (not a paraphrase) and the answer's
    probability normalised over answer + perturbed answers, as ra_/wf_Q_A_Prob_normalised."""
    items = result["sets"]["world_facts"]["per_item"]
    for i, record in enumerate(micro_world["world_facts"][:6]):
        correct = reference_item(eval_model, micro_tokenizer, record["question"], record["answer"])["avg_loss"]
        wrong = [reference_item(eval_model, micro_tokenizer, record["question"], p)["avg_loss"]
                 for p in record["perturbed_answer"]]
        p_correct, p_wrong = math.exp(-correct), [math.exp(-w) for w in wrong]
        assert items["normalized_option_probability"][i] == pytest.approx(p_correct / (p_correct + sum(p_wrong) + 1e-10),
                                                                          rel=1e-5)
        assert items["truth_ratio"][i] == pytest.approx(math.exp(-sum(wrong) / 3) / (p_correct + 1e-10), rel=1e-5)
    assert result["sets"]["world_facts"]["metrics"]["truth_ratio"] == pytest.approx(
        sum(max(0.0, 1 - r) for r in items["truth_ratio"]) / 6)


def test_rouge_target_and_keywords(micro_world, result):
    items = result["sets"]["forget10"]["per_item"]
    # The reference's target: decode(conversation) minus decode(prompt), stripped = the answer here.
    assert items["ground_truth"] == [r["answer"] for r in micro_world["forget10"][:6]]
    assert items["keywords"] == [r["keywords"] for r in micro_world["forget10"][:6]]  # the world's own keywords
    assert items["keywords_derived"] == [False] * 6
    assert set(result["sets"]["holdout"]["metrics"]) == {"answer_probability", "extraction_strength",
                                                         "exact_memorization", "mia_loss", "mia_zlib", "mia_min_k",
                                                             "mia_min_k_plus_plus"}


def test_records_without_keywords_get_derived_ones(eval_model, micro_tokenizer, micro_world):
    records = [{k: r[k] for k in ("question", "answer", "paraphrased_answer", "perturbed_answer")}
               for r in micro_world["forget10"][:3]]
    entry = evaluate_set(eval_model, micro_tokenizer, records, config=FAST, role="forget",
                         generations=[r["answer"] for r in records])
    assert entry["per_item"]["keywords_derived"] == [True] * 3
    assert all(entry["per_item"]["keywords"])
    assert entry["metrics"]["keyword_accuracy"] == 1.0 and entry["metrics"]["rouge_l_recall"] == 1.0


def test_one_sweep_is_batch_invariant(eval_model, micro_tokenizer, micro_world):
    """Sorted, right-padded batches give the per-sequence numbers of batch size 1."""
    pairs = [(r["question"], a) for r in micro_world["forget10"][:4] for a in (r["answer"], *r["perturbed_answer"])]
    examples = PromptFormat().encode_many(micro_tokenizer, pairs)
    one, many = (score_examples(eval_model, examples, micro_tokenizer.pad_token_id, b) for b in (1, 16))
    for a, b in zip(one, many):
        assert a.labels == b.labels and a.argmax == b.argmax
        assert a.token_logps == pytest.approx(b.token_logps, abs=1e-5)


def test_generation_is_batch_invariant_and_cut_at_stop_strings(eval_model, micro_tokenizer, micro_world):
    prompts = PromptFormat().prompts_ids(micro_tokenizer, [r["question"] for r in micro_world["forget10"][:5]])
    single = generate_texts(eval_model, micro_tokenizer, prompts, 12, 1)
    batched = generate_texts(eval_model, micro_tokenizer, prompts, 12, 5)
    assert single == batched
    stop = next(w for w in batched[0].split() if len(w) > 1)[:2]
    cut = generate_texts(eval_model, micro_tokenizer, prompts, 12, 5, stop_strings=(stop,))
    assert cut[0] == batched[0].split(stop)[0].strip()
    assert all(c == b.split(stop)[0].strip() if stop in b else c == b for c, b in zip(cut, batched))


def test_cut_generation_follows_the_reference():
    """Cut at each stop in turn (EOS text first), keep the text before it, strip."""
    assert cut_generation(" Paris.</s> more", ["</s>"]) == "Paris."
    assert cut_generation("a\n\nQuestion: b", ["</s>", "\n\n", "Question:"]) == "a"
    assert cut_generation("  no stop here  ", ["</s>"]) == "no stop here"


def test_generation_stops_when_every_sequence_has_ended(eval_model, micro_tokenizer, micro_world):
    """With EOS forced as the first token, generate makes one forward pass, not max_new_tokens."""
    eos, calls = micro_tokenizer.eos_token_id, []

    def force_eos(module, args, output):
        calls.append(1)
        output.logits[..., eos] += 1e4

    handle = eval_model.register_forward_hook(force_eos)
    try:
        prompts = PromptFormat().prompts_ids(micro_tokenizer, [r["question"] for r in micro_world["forget10"][:4]])
        texts = generate_texts(eval_model, micro_tokenizer, prompts, 50, 4)
    finally:
        handle.remove()
    assert texts == [""] * 4 and len(calls) == 1


def test_brief_fine_tuning_raises_forget_scores(eval_model, micro_tokenizer, micro_world):
    """Train a copy of the tiny model on 4 forget items in the same format: their probability, extraction
    strength and ROUGE-L rise."""
    records, fmt = micro_world["forget10"][:4], PromptFormat()
    config = EvalConfig(max_new_tokens=24, batch_size=8)
    before = evaluate_set(eval_model, micro_tokenizer, records, fmt, config, "forget")
    trained = copy.deepcopy(eval_model).train()
    batch = PadCollator(micro_tokenizer.pad_token_id)(encode_records(micro_tokenizer, records, fmt))
    optimizer = torch.optim.Adam(trained.parameters(), lr=1e-2)
    torch.manual_seed(0)
    for _ in range(60):
        optimizer.zero_grad()
        trained(**batch).loss.backward()
        optimizer.step()
    after = evaluate_set(trained, micro_tokenizer, records, fmt, config, "forget")
    assert after["metrics"]["answer_probability"] > 0.5 > before["metrics"]["answer_probability"]
    assert after["metrics"]["extraction_strength"] > before["metrics"]["extraction_strength"]
    assert after["metrics"]["rouge_l_recall"] > before["metrics"]["rouge_l_recall"]


def _eos_by_length(eval_model, eos: int, batch_sizes: list[int]):
    """A forward hook: at decoding steps, EOS becomes the argmax of every row whose count of real tokens
    (prompt + generated, from the 2-D padding mask) is a multiple of 3, so rows with prompts of
    different lengths end at different steps; records each call's batch size."""

    def hook(module, args, kwargs, output):
        mask = kwargs["attention_mask"]  # (B, L)
        batch_sizes.append(mask.shape[0])
        if kwargs["input_ids"].shape[1] == 1:
            output.logits[mask.sum(-1) % 3 == 0, -1, eos] += 1e4

    return eval_model.register_forward_hook(hook, with_kwargs=True)


@pytest.mark.parametrize("stop_strings", [(), ("e",)])
def test_greedy_loop_gives_generates_tokens_and_drops_finished_rows(eval_model, micro_tokenizer, micro_world,
                                                                    stop_strings):
    """Our decoding loop and ``generate`` give the same texts while rows end at different steps (EOS or a
    stop string); the loop's batch shrinks as rows end, ``generate`` keeps every row to the end."""
    prompts = PromptFormat().prompts_ids(micro_tokenizer, [r["question"] for r in micro_world["forget10"][:8]])
    texts, sizes = {}, {}
    for loop in (True, False):
        sizes[loop] = []
        handle = _eos_by_length(eval_model, micro_tokenizer.eos_token_id, sizes[loop])
        try:
            texts[loop] = generate_texts(eval_model, micro_tokenizer, prompts, 20, 8, stop_strings=stop_strings,
                                         use_loop=loop,
                                         static_cache=False)
        finally:
            handle.remove()
    assert texts[True] == texts[False] and len(set(map(len, texts[True]))) > 1
    assert sizes[True][0] == 8 and min(sizes[True]) < 8 and sorted(sizes[True], reverse=True) == sizes[True]
    assert set(sizes[False]) == {8}
    assert sum(sizes[True]) < sum(sizes[False])


def test_preallocated_cache_grows_past_its_capacity(eval_model, micro_tokenizer, micro_world):
    """A cache smaller than the generation grows and gives the tokens of an ample one."""
    from grin_unlearn.data.formatting import left_pad_prompts
    from grin_unlearn.evaluation.engine import greedy_decode
    from grin_unlearn.evaluation import kv_cache

    prompts = PromptFormat().prompts_ids(micro_tokenizer, [r["question"] for r in micro_world["forget10"][:3]])
    inputs = left_pad_prompts(prompts, micro_tokenizer.eos_token_id)
    with torch.inference_mode():
        ample = greedy_decode(eval_model, inputs["input_ids"], inputs["attention_mask"], 15, [])
        original = kv_cache.PreallocatedCache.__init__
        try:
            kv_cache.PreallocatedCache.__init__ = lambda self, capacity: original(self, 2)
            small = greedy_decode(eval_model, inputs["input_ids"], inputs["attention_mask"], 15, [])
        finally:
            kv_cache.PreallocatedCache.__init__ = original
    assert small == ample and all(len(row) == 15 for row in ample)


def test_timing_holds_each_phase_within_the_total(result):
    """``eval.json``'s timing: the four phases of the question/answer sweep, each ≥ 0, adding up to no more
    than the evaluation's seconds."""
    timing = result["timing"]
    phases = [timing[p] for p in ("tokenise", "teacher_forcing", "generation", "metrics")]
    assert all(p >= 0 for p in phases) and sum(phases) <= timing["seconds"] + 0.01
