"""Tests for the evaluation's two shortcuts: teacher forcing with each prompt run once
(grin_unlearn.evaluation.shared_prefix) and greedy generation from the gold answer as a draft
(grin_unlearn.evaluation.draft_decoding). Each must give what the plain path gives."""

import copy

import pytest
from transformers import DynamicCache

from grin_unlearn.data.formatting import PromptFormat
from grin_unlearn.evaluation import EvalConfig
from grin_unlearn.evaluation import draft_decoding, shared_prefix
from grin_unlearn.evaluation.draft_decoding import accepted_tokens, generate_from_drafts
from grin_unlearn.evaluation.engine import generate_texts, generate_token_ids, score_examples
from grin_unlearn.evaluation.shared_prefix import prefix_groups, score_with_shared_prefixes
from grin_unlearn.logprobs import IGNORE_INDEX


@pytest.fixture(scope="module")
def chat_tokenizer(micro_tokenizer):
    tokenizer = copy.deepcopy(micro_tokenizer)
    tokenizer.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}" + tokenizer.eos_token
                               + "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")
    return tokenizer


def qa_pairs(world, n=5):
    return [(r["question"], a) for r in world["forget10"][:n]
            for a in (r["answer"], r["paraphrased_answer"], *r["perturbed_answer"])]


@pytest.mark.parametrize("chat", [True, False])
@pytest.mark.parametrize("batch_size, max_nodes", [(11, 512), (3, 12)])
def test_shared_prefix_scores_equal_whole_sequence_scores(eval_model, micro_tokenizer, chat_tokenizer, micro_world, chat,
                                                          monkeypatch, batch_size, max_nodes):
    tokenizer = chat_tokenizer if chat else micro_tokenizer
    examples = PromptFormat(chat_template=chat).encode_many(tokenizer, qa_pairs(micro_world))
    # A raw-text sequence (nothing shared, labels from the start) in the same chunks as the questions.
    text = tokenizer("Ana Lee was born in Paris.")["input_ids"]
    examples.append({"input_ids": text, "labels": [IGNORE_INDEX] + text[1:], "prompt_ids": []})
    groups = prefix_groups(examples)
    assert sorted(i for _, members in groups for i in members) == list(range(len(examples)))
    assert len(groups) == 6 and min(s for s, _ in groups) == 0 and max(s for s, _ in groups) > 5
    moments = set(range(0, len(examples), 3))
    whole = score_examples(eval_model, examples, tokenizer.pad_token_id, 1, with_moments=moments)
    # The start all of a chunk's prompts share (system message, "Question:") runs once per chunk.
    repeats = []
    real_repeat = DynamicCache.batch_repeat_interleave
    monkeypatch.setattr(DynamicCache, "batch_repeat_interleave",
                        lambda cache, n: repeats.append(n) or real_repeat(cache, n))
    # Every token the model runs: the trees must hold fewer than the members' suffixes.
    fed = []
    real_forward = eval_model.forward
    monkeypatch.setattr(eval_model, "forward", lambda *a, **k: fed.append(tuple(k["input_ids"].shape)) or real_forward(*a, **k))
    # (11, 512): two questions' trees per pass, so a pass's prompts share a start; (3, 12): trees cut at
    # 12 nodes, so a question's answers split over several trees and passes.
    monkeypatch.setattr(shared_prefix, "MAX_TREE_NODES", max_nodes)
    shared = score_with_shared_prefixes(eval_model, examples, tokenizer.pad_token_id, batch_size, with_moments=moments)
    for i, (a, b) in enumerate(zip(shared, whole)):
        assert a.labels == b.labels and a.argmax == b.argmax
        assert a.token_logps == pytest.approx(b.token_logps, abs=1e-5)
        assert (a.vocab_mean is None) == (i not in moments)
        if i in moments:
            assert a.vocab_var == pytest.approx(b.vocab_var, abs=1e-4)
    # The start (the system message and user header all prompts share) runs once, as one row, and is
    # repeated for the rows of each pass.
    start = shared_prefix.shared_start(examples, groups)
    trees = shared_prefix._trees(examples, groups, len(start))
    rows = [len(chunk) for chunk in shared_prefix._chunks(trees, batch_size)]
    assert len(start) > 1 and fed[0] == (1, len(start)) and [r for r, _ in fed[1:]] == rows
    assert repeats == rows
    if batch_size == 11:  # whole trees: fewer token slots (padding included) than the examples' tokens
        assert len(trees) == len(groups)
        assert sum(r * w for r, w in fed) < sum(len(e["input_ids"]) for e in examples)
    else:  # every tree under the cap, unless one member alone exceeds it
        assert len(trees) > len(groups)
        assert all(len(t.tokens) <= max_nodes or len(t.members) == 1 for t in trees)


def test_token_tree_shares_each_common_start_once():
    tree = shared_prefix.token_tree(4, [7, 8, 9], [[5, 6, 1], [5, 6, 2, 3], [4]])
    assert tree.tokens == [5, 6, 1, 2, 3, 4] and tree.parents == [-1, 0, 1, 1, 3, -1]
    assert tree.depths == [0, 1, 2, 2, 3, 0]
    assert tree.paths == [[0, 1, 2], [0, 1, 3, 4], [5]]


def own_greedy_examples(model, tokenizer, prompts, steps):
    """Per prompt, the model's own greedy tokens as a scored 'gold' answer, and two edits of it."""
    greedy = generate_token_ids(model, tokenizer, prompts, steps, 8)
    drafts = []
    for prompt, tokens in zip(prompts, greedy):
        assert len(tokens) > 3
        wrong = tokens[2] + 1 if tokens[2] + 1 < len(tokenizer) else tokens[2] - 1
        for answer in (tokens, tokens[:2] + [wrong] + tokens[3:], [7, 8, 9, 10]):
            drafts.append({"input_ids": prompt + answer, "labels": [IGNORE_INDEX] * len(prompt) + answer,
                           "prompt_ids": prompt})
    return greedy, drafts


@pytest.mark.parametrize("chat", [True, False])
def test_generation_from_drafts_equals_plain_greedy_generation(eval_model, micro_tokenizer, chat_tokenizer, micro_world,
                                                               monkeypatch, chat):
    tokenizer = chat_tokenizer if chat else micro_tokenizer
    prompts = PromptFormat(chat_template=chat).prompts_ids(tokenizer, [r["question"] for r in micro_world["forget10"][:4]])
    greedy, drafts = own_greedy_examples(eval_model, tokenizer, prompts, 10)
    scores = score_examples(eval_model, drafts, tokenizer.pad_token_id, 4)
    prompts3 = [p for p in prompts for _ in range(3)]
    decoded = []
    real = draft_decoding.generate_token_ids
    monkeypatch.setattr(draft_decoding, "generate_token_ids",
                        lambda m, t, contexts, *a, **k: decoded.extend(contexts) or real(m, t, contexts, *a, **k))
    for limit, stops in ((10, ()), (6, ()), (14, ()), (10, (tokenizer.decode(greedy[0][3:5]),))):
        config = EvalConfig(max_new_tokens=limit, stop_strings=stops)
        plain = generate_texts(eval_model, tokenizer, prompts3, limit, 8, stop_strings=stops)
        decoded.clear()
        with_drafts = generate_from_drafts(eval_model, tokenizer, prompts3, list(zip(drafts, scores)), config)
        assert with_drafts == plain
        if limit <= 10 and not stops:  # a draft of the model's own tokens leaves nothing to decode
            assert 0 < len(decoded) <= 2 * len(prompts)
    # No draft at all (None) decodes every prompt.
    config = EvalConfig(max_new_tokens=10)
    assert generate_from_drafts(eval_model, tokenizer, prompts, [None] * len(prompts), config) == \
        generate_texts(eval_model, tokenizer, prompts, 10, 8)


def test_accepted_tokens_follow_the_argmax_until_it_leaves_the_draft():
    class Score:  # the two fields accepted_tokens reads
        def __init__(self, labels, argmax):
            self.labels, self.argmax = labels, argmax

    example = {"input_ids": [1, 2, 5, 6, 7, 0], "labels": [IGNORE_INDEX, IGNORE_INDEX, 5, 6, 7, 0]}
    assert accepted_tokens([1, 2], example, Score([5, 6, 7, 0], [5, 6, 7, 0]), [0], 50) == ([5, 6, 7, 0], True)
    assert accepted_tokens([1, 2], example, Score([5, 6, 7, 0], [5, 9, 7, 0]), [0], 50) == ([5, 9], False)
    assert accepted_tokens([1, 2], example, Score([5, 6, 7, 0], [5, 0, 7, 0]), [0], 50) == ([5, 0], True)  # EOS
    assert accepted_tokens([1, 2], example, Score([5, 6, 7, 0], [5, 6, 7, 0]), [0], 2) == ([5, 6], True)  # limit
    no_eos = {"input_ids": [1, 2, 5, 6], "labels": [IGNORE_INDEX, IGNORE_INDEX, 5, 6]}
    assert accepted_tokens([1, 2], no_eos, Score([5, 6], [5, 6]), [0], 50) == ([5, 6], False)
    # The scored sequence does not continue this prompt, or its labels start elsewhere: no draft.
    assert accepted_tokens([1, 3], example, Score([5, 6, 7, 0], [5, 6, 7, 0]), [0], 50) is None
    assert accepted_tokens([1], example, Score([5, 6, 7, 0], [5, 6, 7, 0]), [0], 50) is None


def test_a_kernel_without_4d_masks_is_scored_sequence_by_sequence(eval_model, micro_tokenizer, micro_world, monkeypatch):
    """Flash-attention reads no custom 4-D mask: such a model must not get token trees (their branches
    would see each other) but the plain scores."""
    examples = PromptFormat().encode_many(micro_tokenizer, qa_pairs(micro_world, 2))
    monkeypatch.setattr(shared_prefix, "TREE_ATTENTION", ("flash_attention_2",))  # the micro model's sdpa is out
    monkeypatch.setattr(shared_prefix, "_tree_pass", lambda *a, **k: pytest.fail("token trees on a kernel without 4-D masks"))
    got = score_with_shared_prefixes(eval_model, examples, micro_tokenizer.pad_token_id, 4)
    want = score_examples(eval_model, examples, micro_tokenizer.pad_token_id, 4)
    assert [s.token_logps for s in got] == [s.token_logps for s in want]
