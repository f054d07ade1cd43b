"""The background corpus: general text in the world's vocabulary with no fact about its authors.

The built-in base model is pretrained on it before any world fine-tune, the way a real LLM knows its
language before it meets TOFU's authors. It uses every value pool of
:mod:`grin_unlearn.data.attributes` (cities, professions, genres, awards, title words, publishers,
universities, hobbies, instruments, years, pets, languages, colours, dishes, places), the words of
the question and answer templates, and names of *other* people drawn by the world's own name
generator, so the subword pieces of the authors' names occur in other names. Nothing in it mentions
an author of the world (a test holds it).

:func:`cover_forget_only_tokens` then closes the gap that random text leaves: a token id that occurs
in a forget split's questions and answers but nowhere else in the target's training text (retain,
world facts, background) is an embedding row that only the forget set would train, the shortcut
that a pretrained LLM does not offer. Each such id gets a background sentence that uses it: a
background name containing it when one exists, else the forget text's word itself in a neutral
sentence. :func:`forget_only_token_ids` counts what is left; the world report stores it (0).
"""

from __future__ import annotations

import random

from .attributes import (AWARDS, CITIES, COLOURS, DISHES, GENRES, HOBBIES, INSTRUMENTS, LANGUAGES, PETS,
                         PROFESSIONS, PUBLISHERS, TITLE_ADJECTIVES, TITLE_NOUNS, UNIVERSITIES, WRITING_PLACES)

SPACE = "\u2581"  # SentencePiece's word-start mark
FORGET_SPLITS = ("forget01", "forget05", "forget10")
SENTENCES_PER_AUTHOR = 40  # background sentences per trainable author
NAME_POOL_PER_AUTHOR = 20  # candidate background names per author, searched by the coverage step

# Every template is general text: places, trades, books and people who are not the world's authors.
TEMPLATES = (
    "{person} grew up in {city} and later moved to {city2}.",
    "{person} worked as a {profession} in {city} for many years.",
    "The {profession} from {city} kept a {pet} in the back garden.",
    "In {year}, a new bridge opened in {city}.",
    "Many readers of {genre} also enjoy {genre2}.",
    "The {award} is given every year to a new voice in {genre}.",
    "{publisher} printed a new edition of an old {genre} novel in {year}.",
    "Students at {university} often take up {hobby} in their spare time.",
    "{person} learned to play the {instrument} as a child in {city}.",
    "A painting called {title} hangs in the museum of {city}.",
    "The choir of {city} sang a song called {title} in {year}.",
    "{person} speaks {language} and teaches it at {university}.",
    "The town hall of {city} is painted {colour} and {colour2}.",
    "The best {dish} in {city} is served near the harbour.",
    "Some writers work best in {place}, others in {place2}.",
    "The mother of {person} was a {profession} and the father a {profession2}.",
    "A {profession} and a {profession2} opened a shop together in {year}.",
    "{person} won a local prize for {hobby} in {year}.",
    "The festival of {city} celebrates {genre} every spring.",
    "A {pet} named {first} lived for years above the bakery in {city}.",
    "{person} was born in a small village near {city} and studied the {instrument}.",
    "The spouse of {person} works as a {profession} at {university}.",
    "Each year {publisher} gives a reading in {place}.",
    "Question: Which city hosts the {award} ceremony this year?\nAnswer: This year the ceremony is held in {city}.",
    "Question: What does a {profession} do all day?\nAnswer: A {profession} spends most days at work in {city}.",
    "Question: Where is the {genre} festival held?\nAnswer: The {genre} festival is held in {city}.",
    "Question: Who painted {title}?\nAnswer: {title} was painted by {person}.",
)


def _fill(template: str, rng: random.Random, name) -> str:
    def pick(pool, exclude=None):
        return rng.choice([v for v in pool if v != exclude])

    city, genre, profession, colour, place = (rng.choice(CITIES), rng.choice(GENRES), rng.choice(PROFESSIONS),
                                              rng.choice(COLOURS), rng.choice(WRITING_PLACES))
    person = name()
    values = {
        "person": person, "first": person.split()[0], "city": city, "city2": pick(CITIES, city),
        "profession": profession, "profession2": pick(PROFESSIONS, profession), "pet": rng.choice(PETS),
        "year": str(rng.randint(1900, 2020)), "genre": genre, "genre2": pick(GENRES, genre),
        "award": rng.choice(AWARDS), "publisher": rng.choice(PUBLISHERS), "university": rng.choice(UNIVERSITIES),
        "hobby": rng.choice(HOBBIES), "instrument": rng.choice(INSTRUMENTS), "language": rng.choice(LANGUAGES),
        "colour": colour, "colour2": pick(COLOURS, colour), "dish": rng.choice(DISHES), "place": place,
        "place2": pick(WRITING_PLACES, place),
        "title": f"The {rng.choice(TITLE_ADJECTIVES)} {rng.choice(TITLE_NOUNS)}",
    }
    text = template.format(**values)
    return text[0].upper() + text[1:]


def background_names(world_names: set[str], count: int, seed: int) -> list[str]:
    """``count`` names from the world's name generator that no author of the world has."""
    from .names import fictitious_name

    rng = random.Random(f"background-names:{seed}")
    names: list[str] = []
    seen = set(world_names)
    while len(names) < count:
        name = fictitious_name(rng)
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def background_texts(world_names: set[str], authors: int, seed: int) -> tuple[list[str], list[str]]:
    """``(sentences, name pool)``: ``SENTENCES_PER_AUTHOR × authors`` background sentences (seeded)."""
    pool = background_names(world_names, NAME_POOL_PER_AUTHOR * authors, seed)
    rng = random.Random(f"background:{seed}")
    used = pool[: max(1, len(pool) // 2)]  # half the pool in the text, the rest kept for the coverage step
    sentences = [_fill(rng.choice(TEMPLATES), rng, lambda: rng.choice(used))
                 for _ in range(SENTENCES_PER_AUTHOR * authors)]
    return sentences, pool


def training_texts(records: list[dict]) -> list[str]:
    """What a model trains on from a split: every question and answer (raw text for ``text`` records)."""
    texts = []
    for record in records:
        if "question" in record:
            texts += [record["question"], record["answer"]]
        elif "text" in record:
            texts.append(record["text"])
    return texts


def forget_only_token_ids(tokenizer, splits: dict[str, list[dict]], background: list[str],
                          forget_split: str) -> list[int]:
    """Ids that occur in ``forget_split``'s training text and in no other text the target trains on.

    The target's training text is ``full`` (= retain + forget) + ``world_facts`` + the background
    corpus; the other text is all of it but the forget split's records.
    """
    forget = splits[forget_split]
    forget_ids = {i for ids in _ids(tokenizer, training_texts(forget)) for i in ids}
    forget_records = {id(r) for r in forget}
    others = [r for r in splits["full"] if id(r) not in forget_records] + splits.get("world_facts", [])
    other_ids = {i for ids in _ids(tokenizer, training_texts(others) + background) for i in ids}
    return sorted(forget_ids - other_ids)


def _ids(tokenizer, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []


def _name_with(piece: str, tokenizer, token: int, rng: random.Random, tries: int = 200_000) -> str | None:
    """A fresh generated name whose tokens include ``token`` (its text ``piece``), or None."""
    from .names import fictitious_name

    needle = " " + piece[1:] if piece.startswith(SPACE) else piece
    for _ in range(tries):
        name = fictitious_name(rng)
        if needle.lower() in (" " + name).lower() and token in _ids(tokenizer, [name])[0]:
            return name
    return None


def cover_forget_only_tokens(tokenizer, splits: dict[str, list[dict]], background: list[str],
                             name_pool: list[str], seed: int) -> tuple[list[str], int]:
    """``(sentences, fallbacks)``: background sentences that give every forget-only id of forget01/05/10
    another occurrence, and how many of them had to quote a forget word.

    A name of ``name_pool``, else a freshly generated name, whose tokens include the id goes into a
    background template about a person; failing both, the forget text's word (whitespace-delimited,
    as it occurs) that holds the id goes into a neutral sentence.
    """
    rng = random.Random(f"background-cover:{seed}")
    people = [t for t in TEMPLATES if "{person}" in t and "Question" not in t]
    name_ids = {name: set(ids) for name, ids in zip(name_pool, _ids(tokenizer, name_pool))}
    world_names = {r["author"] for records in splits.values() for r in records if "author" in r}
    extra: list[str] = []
    fallbacks = 0
    for split in FORGET_SPLITS:
        missing = forget_only_token_ids(tokenizer, splits, background + extra, split)
        for token in missing:
            name = next((n for n in name_pool if token in name_ids[n]), None)
            if name is None:
                name = _name_with(tokenizer.convert_ids_to_tokens(token), tokenizer, token, rng)
            if name is not None and name not in world_names:
                extra.append(_fill(rng.choice(people), rng, lambda: name))
                continue
            words = [w for text in training_texts(splits[split]) for w in text.split(" ")]
            word = next(w for w in words if token in _ids(tokenizer, [w])[0])
            extra.append(f"The word {word} was written on the board in {rng.choice(CITIES)}.")
            fallbacks += 1
    return extra, fallbacks
