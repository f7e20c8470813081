from __future__ import annotations

import pickle
import random
import time

import pytest

from airflow_provider_kbatch.spec.intervals import IndexSet, map_local, map_logical


@pytest.mark.parametrize(
    ("text", "members", "canonical"),
    [
        ("", [], ""),
        ("  ", [], ""),
        ("5", [5], "5"),
        ("0-2,5", [0, 1, 2, 5], "0-2,5"),
        ("3-4", [3, 4], "3-4"),
        ("0,1,2", [0, 1, 2], "0-2"),
        ("5,0-2", [0, 1, 2, 5], "0-2,5"),
        ("0-3,2-6", list(range(7)), "0-6"),
        ("0-2,3-4", list(range(5)), "0-4"),
        (" 1 , 3-4 ", [1, 3, 4], "1,3-4"),
        ("007", [7], "7"),
    ],
)
def test_parse_and_str(text: str, members: list[int], canonical: str) -> None:
    s = IndexSet.parse(text)
    assert list(s) == members
    assert str(s) == canonical
    assert len(s) == len(members)
    assert IndexSet.parse(str(s)) == s


@pytest.mark.parametrize(
    ("text", "bad_part"),
    [
        ("1,,2", "''"),
        ("a", "'a'"),
        ("3-1", "'3-1'"),
        ("-1", "'-1'"),
        ("1-", "'1-'"),
        ("1-2-3", "'1-2-3'"),
        ("1;2", "'1;2'"),
        ("1.5", "'1.5'"),
        ("+1", "'+1'"),
        ("١", "'١'"),  # noqa: RUF001 -- a non-ASCII digit on purpose
        ("0-2,", "''"),
    ],
)
def test_parse_is_strict_and_names_the_bad_part(text: str, bad_part: str) -> None:
    with pytest.raises(ValueError) as exc:
        IndexSet.parse(text)
    assert bad_part in str(exc.value)


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(TypeError):
        IndexSet.parse(None)  # type: ignore[arg-type]


def test_full_of_and_intervals() -> None:
    assert str(IndexSet.full(0)) == ""
    assert str(IndexSet.full(-3)) == ""
    assert str(IndexSet.full(4)) == "0-3"
    assert str(IndexSet.of([9, 1, 2, 2, 3, 7])) == "1-3,7,9"
    assert IndexSet.of([3, 1, 2]).intervals == ((1, 3),)
    assert IndexSet([(5, 6), (0, 1), (2, 2)]).intervals == ((0, 2), (5, 6))
    for bad in ([-1], [True], ["1"]):
        with pytest.raises((TypeError, ValueError)):
            IndexSet.of(bad)  # type: ignore[list-item]
    with pytest.raises(ValueError):
        IndexSet([(3, 1)])


@pytest.mark.parametrize(
    ("a", "b", "union", "inter", "diff"),
    [
        ("0-9", "3-5", "0-9", "3-5", "0-2,6-9"),
        ("0-2", "3-4", "0-4", "", "0-2"),
        ("0-2,8-9", "2-8", "0-9", "2,8", "0-1,9"),
        ("", "1", "1", "", ""),
        ("1,3,5", "", "1,3,5", "", "1,3,5"),
        ("0-4,10-14", "2-11,13", "0-14", "2-4,10-11,13", "0-1,12,14"),
        ("5", "0-10", "0-10", "5", ""),
    ],
)
def test_set_algebra_matches_python_sets(a: str, b: str, union: str, inter: str, diff: str) -> None:
    x, y = IndexSet.parse(a), IndexSet.parse(b)
    assert str(x | y) == union
    assert str(x & y) == inter
    assert str(x - y) == diff
    sx, sy = set(x), set(y)
    assert set(x | y) == sx | sy and set(x & y) == sx & sy and set(x - y) == sx - sy


def test_set_algebra_randomised_against_python_sets() -> None:
    rng = random.Random(7)
    for _ in range(300):
        sx = {rng.randrange(60) for _ in range(rng.randrange(40))}
        sy = {rng.randrange(60) for _ in range(rng.randrange(40))}
        x, y = IndexSet.of(sx), IndexSet.of(sy)
        assert set(x | y) == sx | sy
        assert set(x & y) == sx & sy
        assert set(x - y) == sx - sy
        assert x.issubset(x | y) and (x - y).isdisjoint(y)
        assert IndexSet.parse(str(x)) == x


def test_contains() -> None:
    s = IndexSet.parse("0-2,5,10-12")
    assert [i for i in range(14) if i in s] == [0, 1, 2, 5, 10, 11, 12]
    assert -1 not in s and "1" not in s and True not in s


def test_nth_and_position_are_inverse() -> None:
    s = IndexSet.parse("3-5,9,20-22")
    members = list(s)
    for k, index in enumerate(members):
        assert s.nth(k) == index
        assert s.position(index) == k
    assert s.nth(-1) == 22
    with pytest.raises(IndexError):
        s.nth(len(members))
    with pytest.raises(ValueError):
        s.position(6)


def test_equality_and_hash() -> None:
    assert IndexSet.parse("0-2") == IndexSet.of([2, 1, 0]) == IndexSet.full(3)
    assert len({IndexSet.parse("0-2"), IndexSet.of([0, 1, 2]), IndexSet.parse("0,1")}) == 2
    assert IndexSet.parse("1") != IndexSet.parse("2")
    assert IndexSet.parse("1") != "1"
    assert not IndexSet.parse("") and IndexSet.parse("0")
    assert pickle.loads(pickle.dumps(IndexSet.parse("1,4-6"))) == IndexSet.parse("1,4-6")
    assert repr(IndexSet.parse("1,4-6")) == "IndexSet('1,4-6')"


@pytest.mark.parametrize(
    ("index_map", "local", "logical"),
    [
        ("2,5-7", "0-3", "2,5-7"),
        ("2,5-7", "1", "5"),
        ("2,5-7", "0,3", "2,7"),
        ("2,5-7", "", ""),
        ("10-19,30-39", "5-14", "15-19,30-34"),
        ("0,2,4,6", "1-2", "2,4"),
    ],
)
def test_map_local_and_back(index_map: str, local: str, logical: str) -> None:
    m = IndexSet.parse(index_map)
    assert str(map_local(IndexSet.parse(local), m)) == logical
    assert str(map_logical(IndexSet.parse(logical), m)) == local
    assert set(map_local(IndexSet.parse(local), m)) == {m.nth(k) for k in IndexSet.parse(local)}


def test_map_identity_and_out_of_range() -> None:
    s = IndexSet.parse("1-3")
    assert map_local(s, None) is s and map_logical(s, None) is s
    with pytest.raises(ValueError):
        map_local(IndexSet.parse("4"), IndexSet.parse("0-3"))
    # logical indexes the Job does not run are dropped
    assert str(map_logical(IndexSet.parse("0-9"), IndexSet.parse("3,8"))) == "0-1"


def test_large_sets_stay_fast() -> None:
    """100,000 indexes, 50,000 intervals: every operation is interval-based (no per-index sets)."""
    n = 100_000
    evens = IndexSet.of(range(0, n, 2))
    full = IndexSet.full(n)
    started = time.perf_counter()
    text = str(evens)
    assert IndexSet.parse(text) == evens
    odds = full - evens
    assert len(odds) == n // 2 and (odds | evens) == full and not (odds & evens)
    assert evens.nth(49_999) == 99_998 and evens.position(99_998) == 49_999
    assert map_local(IndexSet.full(50_000), evens) == evens
    assert map_logical(evens, evens) == IndexSet.full(50_000)
    for k in range(0, 50_000, 7):
        assert evens.nth(k) == 2 * k
    assert len(full) == n and 99_999 in full and full.intervals == ((0, n - 1),)
    assert time.perf_counter() - started < 5.0
