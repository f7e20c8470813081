from __future__ import annotations

import pytest

from airflow_provider_kbatch.runtime import indexes


@pytest.mark.parametrize(
    ("text", "ranges"),
    [
        ("", ()),
        ("  ", ()),
        ("7", ((7, 7),)),
        ("0-2,5,9-12", ((0, 2), (5, 5), (9, 12))),
        (" 0-2 , 5 ", ((0, 2), (5, 5))),
        ("0-2,3", ((0, 3),)),  # adjacent parts merge
        ("4-4", ((4, 4),)),
    ],
)
def test_parse_ranges(text: str, ranges: tuple) -> None:
    assert indexes.parse_ranges(text) == ranges


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("a", "bad part 'a'"),
        ("-1", "bad part '-1'"),
        ("1,,2", "bad part ''"),
        ("5-2", "range end is below its start"),
        ("5,1", "not above the previous part"),
        ("0-5,3", "not above the previous part"),
        ("0-2,2", "not above the previous part"),
        ("1-2-3", "bad part '1-2-3'"),
    ],
)
def test_parse_ranges_rejects(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match="index set") as err:
        indexes.parse_ranges(text)
    assert fragment in str(err.value)


@pytest.mark.parametrize(
    ("text", "n", "expected"),
    [
        ("0-2,5,9-12", 0, 0),
        ("0-2,5,9-12", 2, 2),
        ("0-2,5,9-12", 3, 5),
        ("0-2,5,9-12", 4, 9),
        ("0-2,5,9-12", 7, 12),
    ],
)
def test_nth(text: str, n: int, expected: int) -> None:
    assert indexes.nth(indexes.parse_ranges(text), n) == expected


@pytest.mark.parametrize("n", [-1, 8])
def test_nth_out_of_range(n: int) -> None:
    with pytest.raises(IndexError):
        indexes.nth(indexes.parse_ranges("0-2,5,9-12"), n)


@pytest.mark.parametrize(
    ("values", "text"),
    [([], ""), ([3], "3"), ([5, 0, 1, 2, 2, 9, 10], "0-2,5,9-10"), (range(100_000), "0-99999")],
)
def test_format_ranges_roundtrip(values, text: str) -> None:
    assert indexes.format_ranges(values) == text
    assert list(indexes.iter_indexes(indexes.parse_ranges(text))) == sorted(set(values))
    assert indexes.count(indexes.parse_ranges(text)) == len(set(values))


def test_format_ranges_rejects_negative() -> None:
    with pytest.raises(ValueError, match="-1"):
        indexes.format_ranges([-1, 2])
