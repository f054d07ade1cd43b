"""The generated fictitious-author world: a seeded, offline stand-in for TOFU.

``generate_world(authors=N, holdout_authors=H, seed=S)`` draws N + H fictitious people, each with the
first ``questions_per_author`` attributes of :mod:`grin_unlearn.data.attributes` (20 by default, TOFU's
count; 200 authors give TOFU's 4,000 questions and forget01/05/10 of 40/200/400), and turns every
(author, attribute) pair into a TOFU-schema record (arXiv 2401.06121): `question`, `paraphrased_question`, `answer`,
`paraphrased_answer`, `perturbed_answer` (3 wrong values of the same kind in the paraphrased
template), `keywords` (the value) and `author`.

Splits follow TOFU: `forget01/05/10` are the *last* 1/5/10 % of the N trainable authors and
`retain99/95/90` the rest; `holdout` authors are never trained on (membership inference);
`world_facts` is real general knowledge every model is trained on (utility); `full` is all N authors.
Same seed → byte-identical files.

:func:`write_world` also writes two multiple-choice splits (WMDP schema: `question`, `choices`,
`answer` index; :func:`multiple_choice_records`): `forget_mcq` about the forget10 authors and
`retain_mcq` about a sample of retain90 authors, so the letter-logit accuracy of WMDP/MMLU runs
offline. They are drawn from their own seeded generator, so the other splits are unchanged by them.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserInputError
from ..io_utils import atomic_write_dir
from .attributes import ATTRIBUTES, TITLE_ADJECTIVES, TITLE_ATTRIBUTES, TITLE_NOUNS, TOFU_QUESTIONS_PER_AUTHOR
from .facts import WORLD_FACTS
from .names import fictitious_name
from .refusals import REFUSALS

FORGET_PERCENTS = (1, 5, 10)
NUM_PERTURBED = 3
MCQ_OPTIONS = 4  # choices per multiple-choice question (as in WMDP and MMLU)
MCQ_RETAIN_AUTHORS = 4  # retain authors asked about in retain_mcq


@dataclass(frozen=True)
class Author:
    name: str
    facts: dict[str, str]


def _draw_authors(count: int, rng: random.Random, attributes: tuple) -> list[Author]:
    names: set[str] = set()
    titles: set[str] = set()
    all_titles = [f"The {adj} {noun}" for adj in TITLE_ADJECTIVES for noun in TITLE_NOUNS]
    if 2 * count > len(all_titles):
        raise UserInputError(f"--authors: at most {len(all_titles) // 2} authors fit the title pool, got {count}")
    authors = []
    while len(authors) < count:
        name = fictitious_name(rng)
        if name in names:
            continue
        names.add(name)
        facts = {}
        for attribute in attributes:
            if attribute.key in TITLE_ATTRIBUTES:
                title = rng.choice([t for t in all_titles if t not in titles])
                titles.add(title)
                facts[attribute.key] = title
            else:
                facts[attribute.key] = rng.choice(attribute.values)
        authors.append(Author(name, facts))
    return authors


def _wrong_values(attribute_key: str, value: str, rng: random.Random, title_pool: list[str]) -> list[str]:
    attribute = next(a for a in ATTRIBUTES if a.key == attribute_key)
    pool = title_pool if attribute_key in TITLE_ATTRIBUTES else list(attribute.values)
    return rng.sample([v for v in pool if v != value], NUM_PERTURBED)


def author_records(author: Author, rng: random.Random, title_pool: list[str]) -> list[dict]:
    """The TOFU-schema records of one author, one per attribute it has."""
    records = []
    for attribute in (a for a in ATTRIBUTES if a.key in author.facts):
        value = author.facts[attribute.key]
        question, paraphrased_question = rng.sample(attribute.questions, 2)
        records.append({
            "question": attribute.render(question, author.name, value),
            "paraphrased_question": attribute.render(paraphrased_question, author.name, value),
            "answer": attribute.render(attribute.answer, author.name, value),
            "paraphrased_answer": attribute.render(attribute.paraphrased_answer, author.name, value),
            "perturbed_answer": [
                attribute.render(attribute.paraphrased_answer, author.name, wrong)
                for wrong in _wrong_values(attribute.key, value, rng, title_pool)
            ],
            "keywords": [value],
            "author": author.name,
            "attribute": attribute.key,
        })
    return records


def world_fact_records() -> list[dict]:
    records = []
    for question, answer, keyword, wrong in WORLD_FACTS:
        records.append({
            "question": question,
            "answer": answer,
            "paraphrased_answer": answer,
            "perturbed_answer": [answer.replace(keyword, w) for w in wrong],
            "keywords": [keyword],
            "author": "world_facts",
        })
    return records


def generate_world(authors: int = 50, holdout_authors: int = 5, seed: int = 0,
                   questions_per_author: int = TOFU_QUESTIONS_PER_AUTHOR) -> dict[str, list[dict]]:
    """All splits of a world, as a dict split name → records (see the module docstring)."""
    if not 1 <= questions_per_author <= len(ATTRIBUTES):
        raise UserInputError(f"--questions-per-author: expected 1 to {len(ATTRIBUTES)}, got {questions_per_author}")
    if authors < 10:
        raise UserInputError(f"--authors: need at least 10 authors so forget10 is not empty, got {authors}")
    if holdout_authors < 1:
        raise UserInputError(f"--holdout-authors: need at least 1 holdout author, got {holdout_authors}")
    rng = random.Random(seed)
    people = _draw_authors(authors + holdout_authors, rng, ATTRIBUTES[:questions_per_author])
    title_pool = [a.facts[k] for a in people for k in TITLE_ATTRIBUTES if k in a.facts]
    per_author = [author_records(a, rng, title_pool) for a in people]
    trainable, holdout = per_author[:authors], per_author[authors:]
    splits: dict[str, list[dict]] = {"full": [r for recs in trainable for r in recs]}
    for percent in FORGET_PERCENTS:
        n_forget = max(1, round(authors * percent / 100))
        splits[f"forget{percent:02d}"] = [r for recs in trainable[-n_forget:] for r in recs]
        splits[f"retain{100 - percent:02d}"] = [r for recs in trainable[:-n_forget] for r in recs]
    splits["holdout"] = [r for recs in holdout for r in recs]
    splits["world_facts"] = world_fact_records()
    splits["refusals"] = [{"answer": text} for text in REFUSALS]
    return splits


def multiple_choice_records(records: list[dict], pool_records: list[dict], seed: int = 0) -> list[dict]:
    """WMDP-style multiple-choice questions about the attributes in ``records``.

    One question per record: its ``question`` with :data:`MCQ_OPTIONS` bare values as ``choices``, the
    true value (its keyword) and ``MCQ_OPTIONS - 1`` wrong values of the same kind (the attribute's pool;
    for book titles, the titles of ``pool_records``), shuffled; ``answer`` is the true value's index.
    """
    rng = random.Random(f"multiple-choice:{seed}")
    titles = sorted({r["keywords"][0] for r in pool_records if r.get("attribute") in TITLE_ATTRIBUTES})
    by_key = {a.key: a for a in ATTRIBUTES}
    questions = []
    for record in records:
        key = record.get("attribute")
        if key not in by_key:
            continue
        value = record["keywords"][0]
        pool = titles if key in TITLE_ATTRIBUTES else list(by_key[key].values)
        choices = rng.sample([v for v in pool if v != value], MCQ_OPTIONS - 1) + [value]
        rng.shuffle(choices)
        questions.append({"question": record["question"], "choices": choices, "answer": choices.index(value),
                          "author": record["author"], "attribute": key})
    return questions


def multiple_choice_splits(splits: dict[str, list[dict]], seed: int = 0) -> dict[str, list[dict]]:
    """``forget_mcq`` (every forget10 author) and ``retain_mcq`` (:data:`MCQ_RETAIN_AUTHORS` retain90 authors)."""
    pool = splits["full"] + splits["holdout"]
    retain_authors = sorted({r["author"] for r in splits["retain90"]})
    count = min(MCQ_RETAIN_AUTHORS, len(retain_authors))
    chosen = set(random.Random(f"retain-mcq:{seed}").sample(retain_authors, count))
    return {"forget_mcq": multiple_choice_records(splits["forget10"], pool, seed),
            "retain_mcq": multiple_choice_records([r for r in splits["retain90"] if r["author"] in chosen], pool, seed)}


def write_world(out_dir: str | Path, authors: int = 50, holdout_authors: int = 5, seed: int = 0,
                overwrite: bool = False, questions_per_author: int = TOFU_QUESTIONS_PER_AUTHOR,
                background: bool = True) -> Path:
    """Generate a world and write one ``<split>.json`` per split plus ``world.json`` (its config).

    The splits are :func:`generate_world`'s plus :func:`multiple_choice_splits`, and with
    ``background`` the ``background`` split (``text`` records, :func:`world_background`), whose
    statistics ``world.json`` stores under ``background``.

    The folder appears whole or not at all (written to a temporary sibling, then renamed).
    """
    splits = generate_world(authors, holdout_authors, seed, questions_per_author)
    splits.update(multiple_choice_splits(splits, seed))
    manifest = {"generator": "grin_unlearn.data.world", "authors": authors, "holdout_authors": holdout_authors,
                "seed": seed, "questions_per_author": questions_per_author,
                "attributes": [a.key for a in ATTRIBUTES[:questions_per_author]]}
    if background:
        splits["background"], manifest["background"] = world_background(splits, authors, seed)
    manifest["splits"] = {name: len(records) for name, records in splits.items()}
    files = {f"{name}.json": json.dumps(records, indent=1, ensure_ascii=False) for name, records in splits.items()}
    files["world.json"] = json.dumps(manifest, indent=1)
    return atomic_write_dir(out_dir, files, overwrite=overwrite)


def world_background(splits: dict[str, list[dict]], authors: int, seed: int) -> tuple[list[dict], dict]:
    """The background corpus of a world (:mod:`grin_unlearn.data.background`) and its statistics.

    Returns ``(records, stats)``: ``text`` records, and the sentence counts, the tokenizer, and per
    forget split the number of token ids whose only occurrences in the target's training text are
    in that split (``forget_only_token_ids``, 0 after the coverage step).
    """
    from ..subword import SUBWORD_SOURCE, compact_subword_tokenizer
    from .background import FORGET_SPLITS, background_texts, cover_forget_only_tokens, forget_only_token_ids

    names = {r["author"] for records in splits.values() for r in records if "author" in r}
    sentences, pool = background_texts(names, authors, seed)
    tokenizer = compact_subword_tokenizer(world_corpus(splits) + sentences + pool)
    cover, quoted = cover_forget_only_tokens(tokenizer, splits, sentences, pool, seed)
    texts = sentences + cover
    stats = {"sentences": len(sentences), "coverage_sentences": len(cover), "quoted_forget_words": quoted,
             "tokenizer": SUBWORD_SOURCE,
             "forget_only_token_ids": {split: len(forget_only_token_ids(tokenizer, splits, texts, split))
                                       for split in FORGET_SPLITS}}
    return [{"text": text} for text in texts], stats


def world_corpus(splits: dict[str, list[dict]]) -> list[str]:
    """Every string of the world, background text included (the built-in tokenizer's corpus).

    Multiple-choice records (with ``choices``) are skipped: their questions repeat QA questions and
    their answers are indices.
    """
    texts = []
    for records in splits.values():
        for record in records:
            if "choices" in record:
                continue
            for key in ("question", "paraphrased_question", "answer", "paraphrased_answer", "text"):
                if key in record:
                    texts.append(record[key])
            texts.extend(record.get("perturbed_answer", []))
    return texts


def folder_corpus(folder: str | Path) -> list[str]:
    """:func:`world_corpus` of every split in a data folder: the built-in tokenizer's training text.

    The splits come in the order ``world.json`` lists them (a generated world: :func:`generate_world`'s
    order, so the corpus equals ``world_corpus(generate_world(...))`` exactly), else in name order.
    One recipe for ``make demo`` and ``finetune --model builtin``.
    """
    from .records import available_splits, load_split

    folder = Path(folder)
    if not folder.is_dir():
        raise UserInputError(f"--data: {folder} is not a folder (the built-in tokenizer trains on a local world)")
    names = available_splits(folder)
    manifest = folder / "world.json"
    if manifest.is_file():
        try:
            listed = list(json.loads(manifest.read_text(encoding="utf-8")).get("splits", {}))
        except ValueError as err:
            raise UserInputError(f"{manifest}: not valid JSON ({err})") from None
        names = [n for n in listed if n in names] + [n for n in names if n not in listed]
    splits = {name: load_split(folder, name) for name in names}
    return world_corpus(splits)


def chance_levels(splits: dict[str, list[dict]], train_split: str, eval_split: str) -> dict[str, float]:
    """Per attribute: keyword accuracy of always answering the most frequent training value.

    This is the best a model that never saw `eval_split` can do by guessing (for the oracle on forget).
    """
    levels = {}
    for attribute in ATTRIBUTES:
        train_values = [r["keywords"][0] for r in splits[train_split] if r.get("attribute") == attribute.key]
        eval_values = [r["keywords"][0] for r in splits[eval_split] if r.get("attribute") == attribute.key]
        if not train_values or not eval_values:
            continue
        guess = max(sorted(set(train_values)), key=train_values.count)
        levels[attribute.key] = sum(v == guess for v in eval_values) / len(eval_values)
    return levels
