from __future__ import annotations

import random

import pytest

from airflow_provider_kbatch.pipeline import indexcodec
from airflow_provider_kbatch.spec.intervals import IndexSet


def _random(n: int, density: float, seed: int) -> IndexSet:
    rng = random.Random(seed)
    return IndexSet.of(i for i in range(n) if rng.random() < density)


@pytest.mark.parametrize(
    ("indexes", "plain"),
    [
        (IndexSet(), True),
        (IndexSet.parse("0-2,5"), True),
        (IndexSet.full(100_000), True),
        (IndexSet.of(range(0, 100_000, 2)), False),
        (_random(100_000, 0.5, 1), False),
        (_random(100_000, 0.01, 2), False),
        (_random(100_000, 0.002, 3), True),
    ],
)
def test_roundtrip_and_bound(indexes: IndexSet, plain: bool) -> None:
    text = indexcodec.encode(indexes)
    assert indexcodec.decode(text) == indexes
    assert (not text.startswith("z:")) is plain
    assert len(text) <= max(indexcodec.INLINE_LIMIT, 17_000)  # ~ 100,000 bits, base64


def test_decode_none_and_errors() -> None:
    assert indexcodec.decode(None) == IndexSet()
    with pytest.raises(ValueError, match="cannot be decoded"):
        indexcodec.decode("z:not base64!")
    with pytest.raises(ValueError):
        indexcodec.decode("1-x")
