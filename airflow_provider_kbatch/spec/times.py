"""Timestamps as Kubernetes and Airflow write them (pure): the one ISO-8601 / RFC 3339 parser.

``2026-01-01T00:00:00Z`` (the API server), ``2026-01-01T00:00:00.123456+00:00`` (Airflow),
``2026-01-01`` (a date a DAG author typed). A value without a zone is UTC.
"""

from __future__ import annotations

import datetime

UTC = datetime.timezone.utc


def parse_time(value: object) -> datetime.datetime:
    """An aware UTC datetime; ``ValueError`` for anything that is not an ISO-8601 time."""
    if not isinstance(value, str | datetime.datetime):
        raise ValueError(f"not a timestamp: {value!r}")
    parsed = (
        value
        if isinstance(value, datetime.datetime)
        else datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    )
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def time_or_none(value: object) -> datetime.datetime | None:
    """:func:`parse_time`, or ``None`` for a missing or malformed value (status fields)."""
    if value is None or value == "":
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None
