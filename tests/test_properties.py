"""Property-based tests of the record loaders (hypothesis).

The selection's properties (exact ``round(p·N)`` count, every selected score >= every unselected one,
same result as a brute-force sort, for any scores and any p) live in
``tests/test_selection.py::test_property_exact_count_and_order``.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from grin_unlearn.data.records import read_records_file
from grin_unlearn.errors import UserInputError

RECORD = st.fixed_dictionaries(
    {"question": st.text(), "answer": st.text()},
    optional={"paraphrased_answer": st.text(), "perturbed_answer": st.lists(st.text(), max_size=3),
              "author": st.text(max_size=10)},
)
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("records")


@SETTINGS
@given(records=st.lists(RECORD, max_size=6), as_lines=st.booleans(), ascii_only=st.booleans(),
       indent=st.sampled_from([None, 1]), bom=st.booleans())
@example(records=[{"question": "a\u2028b", "answer": "c\x85d\x1ce"}], as_lines=True, ascii_only=False, indent=None,
         bom=True)
def test_records_read_back_equal(folder, records, as_lines, ascii_only, indent, bom):
    """JSON array or JSON lines, escaped or raw Unicode (U+2028 included), with or without a BOM."""
    if as_lines:
        text = "".join(json.dumps(r, ensure_ascii=ascii_only) + "\n" for r in records)
    else:
        text = json.dumps(records, ensure_ascii=ascii_only, indent=indent)
    path = folder / ("split.jsonl" if as_lines else "split.json")
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode("utf-8"))
    assert read_records_file(path) == records


GARBAGE = st.one_of(
    st.text(min_size=1, max_size=40),
    st.sampled_from(["123", "null", "true", '"just a string"', "[1, 2]", '{"question": ', "{'single': 1}",
                     "NaN]", "1" * 5000, "[" * 50_000, "\x00", "}{"]),
)


def _is_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except (ValueError, RecursionError):
        return False


@SETTINGS
@given(records=st.lists(RECORD, min_size=0, max_size=4), garbage=GARBAGE, data=st.data())
@example(records=[], garbage="1" * 5000, data=None)
@example(records=[{"question": "q", "answer": "a"}], garbage="[" * 50_000, data=None)
def test_a_garbage_line_is_named_never_another_exception(folder, records, garbage, data):
    assume("\n" not in garbage and garbage.strip() and not _is_object(garbage))
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    position = data.draw(st.integers(0, len(lines)), label="position") if data is not None else len(lines)
    # A first line opening with "[" makes the whole file a JSON array, whose errors are located by the parser.
    assume(position > 0 or not garbage.lstrip().startswith("["))
    lines.insert(position, garbage)
    path = folder / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(UserInputError, match=rf"bad\.jsonl: line {position + 1} is "):
        read_records_file(path)
