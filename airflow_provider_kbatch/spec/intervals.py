"""Index-interval arithmetic in the Kubernetes format (``"0-2,5"``).

:class:`IndexSet` is an immutable set of non-negative integers kept as sorted, merged, inclusive
intervals, so a set of 100,000 indexes costs as much as its number of runs, not its size. The
string form is the one the Job API uses for ``status.completedIndexes``, ``status.failedIndexes``
and ``successPolicy.rules[].succeededIndexes``.

Resumed Jobs run a subset of the logical indexes: Job-local index ``k`` runs logical index
``index_map.nth(k)``. :func:`map_local` and :func:`map_logical` convert whole sets either way.
"""

from __future__ import annotations

import heapq
import re
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from itertools import accumulate

_PART = re.compile(r"([0-9]+)(?:-([0-9]+))?")
_MAX_QUOTED = 60


def _quote(text: str) -> str:
    if len(text) > _MAX_QUOTED:
        text = text[: _MAX_QUOTED - 3] + "..."
    return repr(text)


def _merge_sorted(pairs: Iterable[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """Merge intervals sorted by start into disjoint, non-adjacent ones."""
    starts: list[int] = []
    ends: list[int] = []
    for a, b in pairs:
        if ends and a <= ends[-1] + 1:
            if b > ends[-1]:
                ends[-1] = b
        else:
            starts.append(a)
            ends.append(b)
    return starts, ends


class IndexSet:
    """Immutable set of non-negative ints stored as sorted, merged, inclusive intervals."""

    __slots__ = ("_cum", "_ends", "_starts")

    _starts: tuple[int, ...]
    _ends: tuple[int, ...]
    _cum: tuple[int, ...]

    def __init__(self, intervals: Iterable[tuple[int, int]] = ()) -> None:
        """Build from inclusive ``(start, end)`` pairs in any order, overlapping or not."""
        pairs = []
        for a, b in intervals:
            _check_index(a)
            _check_index(b)
            if b < a:
                raise ValueError(f"interval ({a}, {b}) ends before it starts")
            pairs.append((a, b))
        if any(pairs[i][0] > pairs[i + 1][0] for i in range(len(pairs) - 1)):
            pairs.sort()
        starts, ends = _merge_sorted(pairs)
        self._set(starts, ends)

    def _set(self, starts: list[int], ends: list[int]) -> None:
        self._starts = tuple(starts)
        self._ends = tuple(ends)
        self._cum = tuple(accumulate(b - a + 1 for a, b in zip(starts, ends, strict=True)))

    @classmethod
    def _raw(cls, starts: list[int], ends: list[int]) -> IndexSet:
        """Internal constructor for already sorted, merged intervals."""
        obj = cls.__new__(cls)
        obj._set(starts, ends)
        return obj

    # ----------------------------------------------------------------- constructors

    @classmethod
    def parse(cls, text: str) -> IndexSet:
        """Parse ``"0-2,5"``; ``""`` is the empty set.

        Strict: every comma-separated part must be ``N`` or ``N-M`` (ASCII digits, ``N <= M``);
        whitespace around a part is tolerated. Parts may come in any order and overlap (the
        result is normalised). Raises :class:`ValueError` naming the bad part.
        """
        if not isinstance(text, str):
            raise TypeError(f"IndexSet.parse() needs a str, got {type(text).__name__}")
        if not text.strip():
            return _EMPTY
        pairs = []
        for part in text.split(","):
            match = _PART.fullmatch(part.strip())
            if match is None:
                raise ValueError(
                    f"invalid index range {_quote(part)} in {_quote(text)}: expected N or N-M "
                    "with non-negative integers, separated by commas (e.g. '0-2,5')"
                )
            a = int(match[1])
            b = int(match[2]) if match[2] is not None else a
            if b < a:
                raise ValueError(f"invalid index range {_quote(part)} in {_quote(text)}: {b} is before {a}")
            pairs.append((a, b))
        return cls(pairs)

    @classmethod
    def full(cls, n: int) -> IndexSet:
        """``{0, 1, ..., n-1}`` (empty when ``n <= 0``)."""
        return cls._raw([0], [n - 1]) if n > 0 else _EMPTY

    @classmethod
    def of(cls, indexes: Iterable[int]) -> IndexSet:
        """Build from individual indexes (any order, duplicates allowed)."""
        values = set()
        for i in indexes:
            _check_index(i)
            values.add(i)
        starts: list[int] = []
        ends: list[int] = []
        for i in sorted(values):
            if ends and i == ends[-1] + 1:
                ends[-1] = i
            else:
                starts.append(i)
                ends.append(i)
        return cls._raw(starts, ends)

    # ----------------------------------------------------------------- inspection

    @property
    def intervals(self) -> tuple[tuple[int, int], ...]:
        """The sorted, merged, inclusive ``(start, end)`` intervals."""
        return tuple(zip(self._starts, self._ends, strict=True))

    def __len__(self) -> int:
        return self._cum[-1] if self._cum else 0

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, int) or isinstance(item, bool):
            return False
        i = bisect_right(self._starts, item) - 1
        return i >= 0 and item <= self._ends[i]

    def __iter__(self) -> Iterator[int]:
        for a, b in zip(self._starts, self._ends, strict=True):
            yield from range(a, b + 1)

    def __str__(self) -> str:
        return ",".join(
            str(a) if a == b else f"{a}-{b}" for a, b in zip(self._starts, self._ends, strict=True)
        )

    def __repr__(self) -> str:
        return f"IndexSet({_quote(str(self)) if len(self._starts) > 8 else repr(str(self))})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IndexSet):
            return NotImplemented
        return self._starts == other._starts and self._ends == other._ends

    def __hash__(self) -> int:
        return hash((self._starts, self._ends))

    def __reduce__(self) -> tuple[type[IndexSet], tuple[tuple[tuple[int, int], ...]]]:
        return (IndexSet, (self.intervals,))

    def issubset(self, other: IndexSet) -> bool:
        return not (self - other)

    def isdisjoint(self, other: IndexSet) -> bool:
        return not (self & other)

    # ----------------------------------------------------------------- set algebra

    def __or__(self, other: IndexSet) -> IndexSet:
        if not isinstance(other, IndexSet):
            return NotImplemented
        merged = heapq.merge(
            zip(self._starts, self._ends, strict=True), zip(other._starts, other._ends, strict=True)
        )
        return IndexSet._raw(*_merge_sorted(merged))

    def __and__(self, other: IndexSet) -> IndexSet:
        if not isinstance(other, IndexSet):
            return NotImplemented
        starts: list[int] = []
        ends: list[int] = []
        i = j = 0
        a_s, a_e, b_s, b_e = self._starts, self._ends, other._starts, other._ends
        while i < len(a_s) and j < len(b_s):
            lo = max(a_s[i], b_s[j])
            hi = min(a_e[i], b_e[j])
            if lo <= hi:
                starts.append(lo)
                ends.append(hi)
            if a_e[i] < b_e[j]:
                i += 1
            else:
                j += 1
        return IndexSet._raw(starts, ends)

    def __sub__(self, other: IndexSet) -> IndexSet:
        if not isinstance(other, IndexSet):
            return NotImplemented
        starts: list[int] = []
        ends: list[int] = []
        j = 0
        b_s, b_e = other._starts, other._ends
        for a, b in zip(self._starts, self._ends, strict=True):
            while j < len(b_s) and b_e[j] < a:
                j += 1
            k = j
            cur = a
            while k < len(b_s) and b_s[k] <= b:
                if b_s[k] > cur:
                    starts.append(cur)
                    ends.append(b_s[k] - 1)
                cur = max(cur, b_e[k] + 1)
                k += 1
            if cur <= b:
                starts.append(cur)
                ends.append(b)
        return IndexSet._raw(starts, ends)

    # ----------------------------------------------------------------- positions

    def nth(self, k: int) -> int:
        """The k-th smallest member (0-based; negative counts from the end)."""
        n = len(self)
        if k < 0:
            k += n
        if not 0 <= k < n:
            raise IndexError(f"position {k} out of range for an IndexSet of {n} indexes")
        i = bisect_right(self._cum, k)
        before = self._cum[i - 1] if i else 0
        return self._starts[i] + (k - before)

    def position(self, index: int) -> int:
        """Inverse of :meth:`nth`: how many members are smaller than ``index``."""
        i = bisect_right(self._starts, index) - 1
        if i < 0 or index > self._ends[i]:
            raise ValueError(f"{index} is not in {_quote(str(self))}")
        before = self._cum[i - 1] if i else 0
        return before + (index - self._starts[i])

    def select(self, positions: IndexSet) -> IndexSet:
        """The members at the given positions: ``{self.nth(p) for p in positions}``."""
        if positions and positions._ends[-1] >= len(self):
            raise ValueError(
                f"position {positions._ends[-1]} out of range for an IndexSet of {len(self)} indexes"
            )
        starts: list[int] = []
        ends: list[int] = []
        for p, q in zip(positions._starts, positions._ends, strict=True):
            i = bisect_right(self._cum, p)
            while p <= q:
                before = self._cum[i - 1] if i else 0
                lo = self._starts[i] + (p - before)
                take = min(q, self._cum[i] - 1) - p
                starts.append(lo)
                ends.append(lo + take)
                p += take + 1
                i += 1
        return IndexSet._raw(*_merge_sorted(zip(starts, ends, strict=True)))

    def positions_of(self, subset: IndexSet) -> IndexSet:
        """Positions (in this set) of the members of ``subset`` that are in this set."""
        pairs = []
        for a, b in (self & subset).intervals:
            pa = self.position(a)
            pairs.append((pa, pa + (b - a)))
        return IndexSet._raw(*_merge_sorted(pairs))


def _check_index(value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"indexes must be ints, got {value!r}")
    if value < 0:
        raise ValueError(f"indexes must be non-negative, got {value}")


_EMPTY = IndexSet._raw([], [])


def map_local(local: IndexSet, index_map: IndexSet | None) -> IndexSet:
    """Job-local indexes -> logical indexes (identity when ``index_map`` is None)."""
    return local if index_map is None else index_map.select(local)


def map_logical(logical: IndexSet, index_map: IndexSet | None) -> IndexSet:
    """Logical indexes -> Job-local indexes; logical indexes the Job does not run are dropped."""
    return logical if index_map is None else index_map.positions_of(logical)
