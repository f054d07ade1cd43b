"""The generated world: schema, TOFU-style splits, determinism, chance levels."""

from __future__ import annotations

import json

import pytest

from grin_unlearn.cli import main
from grin_unlearn.data.attributes import ATTRIBUTES
from grin_unlearn.data.world import chance_levels, generate_world, write_world
from grin_unlearn.errors import UserInputError


def test_records_have_the_tofu_schema(micro_world):
    record = micro_world["forget10"][0]
    assert set(record) >= {"question", "paraphrased_question", "answer", "paraphrased_answer",
                           "perturbed_answer", "keywords", "author"}
    assert record["question"] != record["paraphrased_question"]
    assert record["answer"] != record["paraphrased_answer"]
    assert len(record["perturbed_answer"]) >= 3
    keyword = record["keywords"][0]
    assert keyword in record["answer"] and keyword in record["paraphrased_answer"]
    assert all(keyword not in p for p in record["perturbed_answer"])
    assert len(ATTRIBUTES) >= 10


def test_splits_follow_tofu(micro_world):
    authors = lambda split: {r["author"] for r in micro_world[split]}  # noqa: E731
    assert len(authors("full")) == 10
    assert len(authors("forget10")) == 1 and authors("forget10") == authors("forget05") == authors("forget01")
    assert authors("forget10") | authors("retain90") == authors("full")
    assert not authors("forget10") & authors("retain90")
    assert not authors("holdout") & authors("full")
    # forget10 is the *last* 10 % of the authors, as in TOFU
    assert micro_world["forget10"] == micro_world["full"][-len(micro_world["forget10"]):]
    assert len(micro_world["world_facts"]) >= 30 and len(micro_world["refusals"]) >= 5


def test_larger_world_split_sizes():
    world = generate_world(authors=40, holdout_authors=4, seed=1)
    per_author = len(ATTRIBUTES)
    assert len(world["forget10"]) == 4 * per_author
    assert len(world["forget05"]) == 2 * per_author
    assert len(world["retain90"]) == 36 * per_author


def test_same_seed_same_files_and_different_seed_differs(tmp_path):
    a = write_world(tmp_path / "a", authors=12, holdout_authors=2, seed=3)
    b = write_world(tmp_path / "b", authors=12, holdout_authors=2, seed=3)
    c = write_world(tmp_path / "c", authors=12, holdout_authors=2, seed=4)
    files = sorted(p.name for p in a.iterdir())
    assert files == sorted(p.name for p in b.iterdir())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert (a / "full.json").read_bytes() != (c / "full.json").read_bytes()


def test_chance_levels_are_fractions(micro_world):
    levels = chance_levels(micro_world, "retain90", "forget10")
    assert set(levels) <= {a.key for a in ATTRIBUTES}
    assert all(0.0 <= v <= 1.0 for v in levels.values())


def test_world_cli_writes_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "w"
    assert main(["world", "--out", str(out), "--authors", "10", "--holdout-authors", "1"]) == 0
    meta = json.loads((out / "world.json").read_text())
    assert meta["authors"] == 10
    assert main(["world", "--out", str(out), "--authors", "10"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_too_few_authors_is_a_clear_error_and_writes_nothing(tmp_path, capsys):
    assert main(["world", "--out", str(tmp_path / "w"), "--authors", "3"]) == 2
    assert "at least 10 authors" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()
    with pytest.raises(UserInputError):
        generate_world(authors=20, holdout_authors=0)


def test_tofu_size_world_asks_twenty_distinct_questions_about_each_author():
    world = generate_world(authors=200, holdout_authors=20, seed=0)
    sizes = {name: len(world[name]) for name in ("full", "forget01", "forget05", "forget10", "holdout")}
    assert sizes == {"full": 4000, "forget01": 40, "forget05": 200, "forget10": 400, "holdout": 400}
    by_author: dict[str, list[dict]] = {}
    for record in world["full"]:
        by_author.setdefault(record["author"], []).append(record)
    assert all(len({r["attribute"] for r in records}) == 20 for records in by_author.values())
    titles = [r["keywords"][0] for r in world["full"] + world["holdout"] if r["attribute"] in ("first_book", "second_book")]
    assert len(titles) == len(set(titles))  # every book title belongs to one author
