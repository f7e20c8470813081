"""Bounded-size text encoding of an :class:`IndexSet` for the run ledger.

Interval strings (``"0-97,99"``) are the readable form and are used whenever they are short.
Their length grows with the number of runs, though: 100,000 indexes with every other one failed
is ~50,000 runs, about 300 kB. Past :data:`INLINE_LIMIT` characters the set is stored as
``"z:" + base64(zlib(bitmap))`` when that is shorter: a bitmap of ``max+1`` bits, so at most
~17 kB for 100,000 indexes whatever the pattern (and far less for regular patterns).
"""

from __future__ import annotations

import base64
import re
import zlib

from airflow_provider_kbatch.spec.intervals import IndexSet

INLINE_LIMIT = 2048
PREFIX = "z:"
_RUN = re.compile("1+")


def encode(indexes: IndexSet) -> str:
    """The interval string when short, else the compressed bitmap when that is shorter."""
    text = str(indexes)
    if len(text) <= INLINE_LIMIT:
        return text
    intervals = indexes.intervals
    flags = bytearray(b"0" * (intervals[-1][1] + 1))  # flags[k] is bit k
    for lo, hi in intervals:
        flags[lo : hi + 1] = b"1" * (hi - lo + 1)
    bits = int(flags[::-1], 2)
    raw = bits.to_bytes((bits.bit_length() + 7) // 8, "little")
    packed = PREFIX + base64.b64encode(zlib.compress(raw, 9)).decode("ascii")
    return packed if len(packed) < len(text) else text


def decode(text: str | None) -> IndexSet:
    """Inverse of :func:`encode` (``None`` and ``""`` are the empty set); ``ValueError`` when malformed."""
    if not text:
        return IndexSet()
    if not text.startswith(PREFIX):
        return IndexSet.parse(text)
    try:
        raw = zlib.decompress(base64.b64decode(text[len(PREFIX) :], validate=True))
    except (ValueError, zlib.error) as exc:
        raise ValueError(f"compressed index set {text[:24]!r}...: cannot be decoded ({exc})") from None
    bits = int.from_bytes(raw, "little")
    # bin() is most-significant first; reversed, position k is bit k.
    flags = bin(bits)[2:][::-1] if bits else ""
    return IndexSet((m.start(), m.end() - 1) for m in _RUN.finditer(flags))
