"""A tiny, strict parser for index-interval strings such as ``"0-2,5,9-12"``.

This is the runtime's own copy of the format that ``airflow_provider_kbatch.spec.intervals``
writes (``str(IndexSet)``): comma-separated parts, each a non-negative integer ``n`` or an
inclusive range ``a-b`` with ``a <= b``, in ascending order, not overlapping. The empty string is
the empty set. The runtime cannot import ``spec`` (it runs in slim images), so it keeps this small
parser; the canonical form is the same, so a string written by one is read by the other.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

_PART = re.compile(r"^(\d+)(?:-(\d+))?$")

Ranges = tuple[tuple[int, int], ...]


def parse_ranges(text: str, *, what: str = "index set") -> Ranges:
    """Parse ``"0-2,5"`` into ``((0, 2), (5, 5))`` (inclusive bounds).

    Raises ``ValueError`` naming the bad part: not a number or range, a reversed range, or parts
    out of ascending order / overlapping (the order of the parts is the order of the set, so an
    unsorted string would be ambiguous).
    """
    text = text.strip()
    if not text:
        return ()
    ranges: list[tuple[int, int]] = []
    for raw in text.split(","):
        part = raw.strip()
        match = _PART.match(part)
        if match is None:
            raise ValueError(
                f"{what} {text!r}: bad part {part!r}; expected a non-negative integer or a range 'a-b'"
            )
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) is not None else lo
        if hi < lo:
            raise ValueError(f"{what} {text!r}: bad part {part!r}; range end is below its start")
        if ranges and lo <= ranges[-1][1]:
            raise ValueError(
                f"{what} {text!r}: part {part!r} is not above the previous part; "
                "parts must be ascending and not overlap"
            )
        if ranges and lo == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], hi)  # adjacent parts ("0-2,3") merge
        else:
            ranges.append((lo, hi))
    return tuple(ranges)


def count(ranges: Ranges) -> int:
    """Number of indexes in ``ranges``."""
    return sum(hi - lo + 1 for lo, hi in ranges)


def nth(ranges: Ranges, n: int) -> int:
    """The ``n``-th index (0-based) of the set, in ascending order; ``IndexError`` when out of range."""
    if n < 0:
        raise IndexError(f"position {n} is negative")
    remaining = n
    for lo, hi in ranges:
        size = hi - lo + 1
        if remaining < size:
            return lo + remaining
        remaining -= size
    raise IndexError(f"position {n} is out of range for a set of {count(ranges)} indexes")


def iter_indexes(ranges: Ranges) -> Iterator[int]:
    """Every index of the set, ascending."""
    for lo, hi in ranges:
        yield from range(lo, hi + 1)


def format_ranges(indexes: Iterable[int]) -> str:
    """Canonical string of a collection of non-negative ints (any order, duplicates allowed)."""
    parts: list[str] = []
    start = prev = None
    for i in sorted(set(indexes)):
        if i < 0:
            raise ValueError(f"index {i} is negative")
        if start is None:
            start = prev = i
        elif prev is not None and i == prev + 1:
            prev = i
        else:
            parts.append(_part(start, prev))
            start = prev = i
    if start is not None:
        parts.append(_part(start, prev))
    return ",".join(parts)


def _part(lo: int, hi: int | None) -> str:
    return str(lo) if hi is None or hi == lo else f"{lo}-{hi}"
