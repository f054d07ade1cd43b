"""Teacher forcing with every shared start of the scored sequences run once: each question's prompt,
the start all prompts share, and the start alike answers share.

A TOFU set scores up to five sequences per question (answer, paraphrased answer, three perturbed
answers) that begin with the same prompt; on a chat model the prompt (system message, question, the
assistant header) is about two thirds of each sequence, every prompt begins with the same system
message, and the paraphrased and perturbed answers often begin alike ("The city of Elbraith is where
…", "The city of Varnhollow is where …"). :func:`score_with_shared_prefixes` runs

1. the **start** that every prompt shares (``C`` tokens) once, as one row whose keys and values are
   repeated for each row of every pass;
2. on top of it, each question's tokens after the start as one **token tree** (a trie): each distinct
   ``(path so far, next token)`` is one node, run once, attending to the start and to its own
   ancestors only (a 4-D attention mask; position ``C + depth``). The prompt is the trunk; a node's
   logits predict the next token of every member whose path runs through it.

Attention over ``start + ancestors`` is the computation of the whole sequence with the other branches
masked out, so every score equals :func:`~.engine.score_examples`' up to fp32 summation order (matrix
products of other shapes): ``bench/bench_reference.py --model-set smollm2`` and
``tests/test_shared_prefix.py`` bound it. ``bench/bench_token_trees.py`` counts the tokens: on the
real-model bench's TOFU files the trees run 0.32 of the whole sequences' tokens, against 0.53 with
only each prompt run once.

Grouping: examples with the same ``prompt_ids`` form a group, whose prompt is shared up to
``S = min_m min(LCP(input_ids_m, prompt_ids), first_label_m − 1)`` tokens (so the position that
predicts each member's first labelled token is a tree node, where logits are computed). The start is
``C = min(S, LCP of those prompts)`` over the groups with ``S > 0``; a group with ``S = 0`` (nothing
shared, e.g. raw text) runs its whole sequences as a tree with the start masked out.

Batches: a group's members, sorted so that alike answers are neighbours, go into trees of at most
``MAX_TREE_NODES`` nodes (a longer member gets a tree of its own); trees sorted by size, as many per
pass as hold ``batch_size`` members (at most ``batch_size`` trees), right-padded. Logits are computed
from the first node that predicts a labelled token in any row of the pass (the prompts' trunks need
none), and each node's log-sum-exp, argmax and Min-K%++ moments once, however many members read it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from transformers import DynamicCache

from ..logprobs import IGNORE_INDEX, logits_keep_keyword
from ..models import model_device, text_config
from .engine import AnswerScore, eval_mode, first_label, forward_arguments, score_examples, vocab_moments

MAX_TREE_NODES = 512  # a tree's 4-D mask row is nodes × (start + nodes); this bounds it
TREE_ATTENTION = (None, "eager", "sdpa")  # kernels that read a custom 4-D mask (None: a model's default)
SCORE_ELEMENTS = 2**20 * 3 // 2  # logits scored at a time: 6 MB in fp32, a cache's size (32 rows of a 49k vocabulary)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def prefix_groups(examples: list[dict]) -> list[tuple[int, list[int]]]:
    """``(S, member indices)`` per group of examples sharing ``prompt_ids``; ``S`` as the module says."""
    members: dict[tuple[int, ...], list[int]] = {}
    for i, example in enumerate(examples):
        members.setdefault(tuple(example.get("prompt_ids") or ()), []).append(i)
    groups = []
    for prompt, indices in members.items():
        shared = min(min(_common_prefix(examples[i]["input_ids"], list(prompt)),
                         first_label(examples[i]["labels"]) - 1) for i in indices)
        groups.append((max(shared, 0), indices))
    return groups


def shared_start(examples: list[dict], groups: list[tuple[int, list[int]]]) -> list[int]:
    """The start ``C`` every group with ``S > 0`` shares (module doc); empty when none does."""
    prefixes = [examples[indices[0]]["input_ids"][:shared] for shared, indices in groups if shared > 0]
    if not prefixes:
        return []
    length = min(min(_common_prefix(prefixes[0], p) for p in prefixes), min(map(len, prefixes)))
    return prefixes[0][:length]


@dataclass(frozen=True)
class TokenTree:
    """The trie of some members' tokens after position ``start``: node ``k`` holds ``tokens[k]`` at
    depth ``depths[k]`` below ``parents[k]`` (−1: the start); ``paths[m][t]`` is the node of member
    ``m``'s ``t``-th token after the start. Nodes are numbered in order of creation, so a parent
    precedes its children and the first member's path is ``0, 1, …``."""

    start: int  # C, or 0 for a group that shares nothing
    members: list[int]  # example indices
    tokens: list[int]
    parents: list[int]
    depths: list[int]
    paths: list[list[int]]


class _TreeBuilder:
    """Grows a :class:`TokenTree` one member at a time."""

    def __init__(self, start: int):
        self.index: dict[tuple[int, int], int] = {}  # (parent, token) -> node
        self.tree = TokenTree(start, [], [], [], [], [])

    def new_nodes(self, sequence: list[int]) -> int:
        """How many nodes adding ``sequence`` would create."""
        node = -1
        for depth, token in enumerate(sequence):
            node = self.index.get((node, token))
            if node is None:
                return len(sequence) - depth
        return 0

    def add(self, member: int, sequence: list[int]) -> None:
        tree, node, path = self.tree, -1, []
        for depth, token in enumerate(sequence):
            key = (node, token)
            if key not in self.index:
                self.index[key] = len(tree.tokens)
                tree.tokens.append(token)
                tree.parents.append(node)
                tree.depths.append(depth)
            node = self.index[key]
            path.append(node)
        tree.members.append(member)
        tree.paths.append(path)


def token_tree(start: int, members: list[int], sequences: list[list[int]]) -> TokenTree:
    """The trie of ``sequences`` (each member's tokens after the start)."""
    builder = _TreeBuilder(start)
    for member, sequence in zip(members, sequences):
        builder.add(member, sequence)
    return builder.tree


def _trees(examples: list[dict], groups: list[tuple[int, list[int]]], start: int) -> list[TokenTree]:
    """Each group's members in trees of at most ``MAX_TREE_NODES`` nodes, alike members together."""
    trees = []
    for shared, indices in groups:
        offset = start if shared > 0 else 0
        builder = _TreeBuilder(offset)
        for i in sorted(indices, key=lambda i: examples[i]["input_ids"][offset:]):
            rest = examples[i]["input_ids"][offset:]
            if builder.tree.members and len(builder.tree.tokens) + builder.new_nodes(rest) > MAX_TREE_NODES:
                trees.append(builder.tree)
                builder = _TreeBuilder(offset)
            builder.add(i, rest)
        trees.append(builder.tree)
    return trees


def _chunks(trees: list[TokenTree], batch_size: int):
    """Trees in order of size (largest first), so that a pass pads its rows little; a chunk holds
    ``batch_size`` members (at most ``batch_size`` trees, at least one)."""
    chunk: list[TokenTree] = []
    members = 0
    for tree in sorted(trees, key=lambda t: -len(t.tokens)):
        if chunk and (members + len(tree.members) > batch_size or len(chunk) == batch_size):
            yield chunk
            chunk, members = [], 0
        chunk.append(tree)
        members += len(tree.members)
    if chunk:
        yield chunk


def _start_cache(model, start: list[int]):
    """The start's keys and values, one row (``None`` without a start)."""
    if not start:
        return None
    device = model_device(model)
    cache = DynamicCache()
    model(input_ids=torch.tensor([start], device=device), position_ids=torch.arange(len(start), device=device)[None],
          use_cache=True, **forward_arguments(model, cache, keep=1))
    return cache


def _repeated(cache, rows: int):
    """A copy of the one-row start ``cache`` with its row repeated ``rows`` times (an empty cache
    without a start); the copy, because a pass appends its own keys and values to it."""
    if cache is None:
        return DynamicCache()
    cache = copy.deepcopy(cache)
    cache.batch_repeat_interleave(rows)
    return cache


def _first_scored_node(examples: list[dict], tree: TokenTree) -> int:
    """The lowest-numbered node whose logits predict a labelled token (the node count when none does):
    on each member's path, the node before its first label."""
    nodes = [path[max(first_label(examples[m]["labels"]) - 1 - tree.start, 0)]
             for m, path in zip(tree.members, tree.paths) if first_label(examples[m]["labels"]) - tree.start < len(path)]
    return min(nodes, default=len(tree.tokens))


def _tree_pass(model, examples: list[dict], chunk: list[TokenTree], start: list[int], start_cache, pad: int,
               with_moments) -> dict[int, AnswerScore]:
    """Scores of every member of the chunk's trees: one row per tree, its nodes right-padded at positions
    ``start + depth``; each node attends to the start (when its tree has one) and to its ancestors and
    itself."""
    device = model_device(model)
    width, prefix = max(len(tree.tokens) for tree in chunk), len(start)
    input_ids = np.full((len(chunk), width), pad, dtype=np.int64)
    positions = np.zeros((len(chunk), width), dtype=np.int64)
    allowed = np.zeros((len(chunk), width, prefix + width), dtype=bool)
    allowed[:, np.arange(width), prefix + np.arange(width)] = True  # itself (padding too)
    for r, tree in enumerate(chunk):
        n = len(tree.tokens)
        input_ids[r, :n] = tree.tokens
        positions[r, :n] = np.asarray(tree.depths) + tree.start
        allowed[r, :n, :prefix] = tree.start > 0
        ancestry = allowed[r, :, prefix:]
        for node, parent in enumerate(tree.parents):  # parents precede their children
            if parent >= 0:
                ancestry[node] |= ancestry[parent]
    # Additive form (0 where attended, the dtype's minimum elsewhere), in the weights' dtype (the
    # queries' without autocast): what every 4-D-mask kernel of both transformers majors reads.
    dtype = next(model.parameters()).dtype
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(torch.from_numpy(~allowed), torch.finfo(dtype).min)
    input_ids, positions = torch.from_numpy(input_ids), torch.from_numpy(positions)
    offset = min(_first_scored_node(examples, tree) for tree in chunk) if logits_keep_keyword(model) else 0
    offset = min(offset, width - 1)
    cache = _repeated(start_cache, len(chunk))
    logits = model(input_ids=input_ids.to(device), attention_mask=mask.unsqueeze(1).to(device),
                   position_ids=positions.to(device), use_cache=True,
                   **forward_arguments(model, cache, keep=width - offset)).logits  # (G, W − offset, V)
    return _member_scores(logits.flatten(0, 1), width - offset, offset, examples, chunk, with_moments)


def _member_scores(node_logits: torch.Tensor, kept: int, offset: int, examples: list[dict], chunk: list[TokenTree],
                   with_moments) -> dict[int, AnswerScore]:
    """Each member's :class:`AnswerScore` from the logits of the nodes on its path (``node_logits``:
    (trees × kept, V), node ``k`` of row ``r`` at ``r · kept + k − offset``); each node's log-sum-exp,
    argmax and moments are computed once, however many members read them."""
    members, nodes_read, labels_read, counts = [], [], [], []
    for r, tree in enumerate(chunk):
        for member, path in zip(tree.members, tree.paths):
            labels = examples[member]["labels"][tree.start:]
            scored = [t for t in range(len(path) - 1) if labels[t + 1] != IGNORE_INDEX]
            members.append(member)
            counts.append(len(scored))
            nodes_read += [r * kept + path[t] - offset for t in scored]
            labels_read += [labels[t + 1] for t in scored]
    if not nodes_read:
        return {m: AnswerScore([], [], [], [] if m in with_moments else None, [] if m in with_moments else None)
                for m in members}
    device, vocab = node_logits.device, node_logits.shape[-1]
    nodes, read_rows = torch.unique(torch.tensor(nodes_read), return_inverse=True)  # each node once
    read_labels = torch.tensor(labels_read)
    wants_moments = torch.zeros(len(nodes), dtype=torch.bool)
    moment_reads = torch.tensor([m in with_moments for m, c in zip(members, counts) for _ in range(c)])
    wants_moments[read_rows[moment_reads]] = True
    lse, top = torch.empty(len(nodes)), torch.empty(len(nodes), dtype=torch.long)
    label_logit = torch.empty(len(read_rows))
    means, variances = torch.zeros(len(nodes)), torch.zeros(len(nodes))
    # A cache's worth of vocabulary rows at a time, in buffers allocated once: each row is read about
    # five times (argmax, max, exp, sum), and a fresh multi-MB tensor per step costs page faults.
    step = max(1, SCORE_ELEMENTS // vocab)  # rows at a time
    gathered = node_logits.new_empty((step, vocab))
    buffer = torch.empty((step, vocab), dtype=torch.float32, device=device)
    for first in range(0, len(nodes), step):
        part = nodes[first:first + step].to(device)
        n = len(part)
        rows = buffer[:n]
        torch.index_select(node_logits, 0, part, out=gathered[:n])
        rows.copy_(gathered[:n])  # fp32, cast once (argmax is slow in bf16)
        top[first:first + n] = rows.argmax(dim=-1).cpu()
        here = torch.nonzero((read_rows >= first) & (read_rows < first + n)).squeeze(1)
        label_logit[here] = rows[(read_rows[here] - first).to(device), read_labels[here].to(device)].cpu()
        wanted = torch.nonzero(wants_moments[first:first + n]).squeeze(1)
        if len(wanted):
            mean, var = vocab_moments(rows[wanted.to(device)])
            means[first + wanted], variances[first + wanted] = mean.cpu(), var.cpu()
        # logsumexp(z) = m + log Σ_v exp(z_v − m), m = max_v z_v (as torch.logsumexp), in place.
        peak = rows.amax(dim=-1, keepdim=True)
        lse[first:first + n] = (rows.sub_(peak).exp_().sum(dim=-1).log_() + peak.squeeze(1)).cpu()
    # log softmax(z)[y] = z_y − logsumexp(z), as answer_scores; it can round to +1e-8, hence the clamp.
    columns = [(label_logit - lse[read_rows]).clamp(max=0.0), top[read_rows], read_labels,
               means[read_rows], variances[read_rows]]
    per_member = zip(*(column.split(counts) for column in columns))
    return {m: AnswerScore(logp.tolist(), argmax.tolist(), labels.tolist(),
                           mean.tolist() if m in with_moments else None, var.tolist() if m in with_moments else None)
            for m, (logp, argmax, labels, mean, var) in zip(members, per_member)}


def score_with_shared_prefixes(model, examples: list[dict], pad: int, batch_size: int,
                               with_moments: set[int] | frozenset[int] = frozenset()) -> list[AnswerScore]:
    """:func:`~.engine.score_examples`' scores, every shared start run once (module doc). A model whose
    attention kernel cannot read an arbitrary 4-D mask (flash-attention) is scored sequence by
    sequence with :func:`~.engine.score_examples`."""
    if getattr(text_config(model), "_attn_implementation", None) not in TREE_ATTENTION:
        return score_examples(model, examples, pad, batch_size, with_moments=with_moments)
    groups = prefix_groups(examples)
    start = shared_start(examples, groups)
    scores: dict[int, AnswerScore] = {}
    with eval_mode(model):
        start_cache = _start_cache(model, start)
        for chunk in _chunks(_trees(examples, groups, len(start)), batch_size):
            scores.update(_tree_pass(model, examples, chunk, start, start_cache, pad, with_moments))
    return [scores[i] for i in range(len(examples))]
