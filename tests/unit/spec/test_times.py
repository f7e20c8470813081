from __future__ import annotations

import datetime

import pytest

from airflow_provider_kbatch.spec.times import parse_time, time_or_none

UTC = datetime.timezone.utc


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-01T00:00:05Z", datetime.datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC)),
        ("2026-01-01 02:00:00+02:00", datetime.datetime(2026, 1, 1, tzinfo=UTC)),
        ("2026-01-01", datetime.datetime(2026, 1, 1, tzinfo=UTC)),
        (" 2026-01-01T00:00:00.250000+00:00 ", datetime.datetime(2026, 1, 1, 0, 0, 0, 250000, tzinfo=UTC)),
    ],
)
def test_parse_time(text: str, expected: datetime.datetime) -> None:
    assert parse_time(text) == expected and parse_time(text).tzinfo == UTC


@pytest.mark.parametrize("value", ["yesterday", "", 17, None])
def test_parse_time_rejects(value: object) -> None:
    with pytest.raises(ValueError, match=r"isoformat|timestamp"):
        parse_time(value)


def test_time_or_none() -> None:
    assert time_or_none(None) is None and time_or_none("nope") is None
    assert time_or_none("2026-01-01T00:00:00Z") == datetime.datetime(2026, 1, 1, tzinfo=UTC)
