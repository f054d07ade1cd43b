"""Loading TOFU-schema records: JSON arrays, JSON lines, and one clear error for each bad input."""

from __future__ import annotations

import json

import pytest

from grin_unlearn.data.records import load_qa_split, load_split, read_records_file
from grin_unlearn.errors import UserInputError

RECORD = {"question": "Q?", "answer": "A."}


def test_json_array_and_json_lines_read_the_same(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([RECORD, RECORD]))
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps(RECORD) for _ in range(2)) + "\n")
    assert read_records_file(tmp_path / "a.json") == read_records_file(tmp_path / "b.jsonl") == [RECORD, RECORD]


def test_malformed_json_lines_names_file_and_line(tmp_path):
    path = tmp_path / "forget.jsonl"
    path.write_text(json.dumps(RECORD) + "\n" + json.dumps(RECORD) + "\n{broken\n")
    with pytest.raises(UserInputError, match=r"forget.jsonl: line 3"):
        read_records_file(path)


def test_malformed_json_array_names_line(tmp_path):
    path = tmp_path / "forget.json"
    path.write_text('[\n {"question": "Q?", "answer": "A."},\n {"question": }\n]')
    with pytest.raises(UserInputError, match=r"forget.json: line 3"):
        read_records_file(path)


def test_unknown_split_lists_available(tmp_path):
    (tmp_path / "forget10.json").write_text(json.dumps([RECORD]))
    (tmp_path / "retain90.json").write_text(json.dumps([RECORD]))
    with pytest.raises(UserInputError, match=r"split 'forget99'.*forget10, retain90"):
        load_split(tmp_path, "forget99")


def test_empty_split_and_missing_fields(tmp_path):
    (tmp_path / "empty.json").write_text("[]")
    (tmp_path / "noanswer.json").write_text(json.dumps([{"question": "Q?"}]))
    with pytest.raises(UserInputError, match="empty"):
        load_qa_split(tmp_path, "empty")
    with pytest.raises(UserInputError, match="record 0 .*'answer'"):
        load_qa_split(tmp_path, "noanswer")


def test_missing_folder(tmp_path):
    with pytest.raises(UserInputError, match="not a folder"):
        load_split(tmp_path / "nope", "forget10")
