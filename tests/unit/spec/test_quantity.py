from __future__ import annotations

from decimal import Decimal

import pytest

from airflow_provider_kbatch.spec.quantity import parse_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2", "2"),
        ("500m", "0.5"),
        ("0.5", "0.5"),
        (".5", "0.5"),
        ("1k", "1000"),
        ("1Ki", "1024"),
        ("1Mi", "1048576"),
        ("1Gi", "1073741824"),
        ("1.5Gi", "1610612736"),
        ("1G", "1000000000"),
        ("100n", "0.0000001"),
        ("3u", "0.000003"),
        ("1e3", "1000"),
        ("1E3", "1000"),
        ("1E", "1000000000000000000"),
        ("2e-3", "0.002"),
        ("+1", "1"),
        ("-1", "-1"),
        (4, "4"),
        (0.25, "0.25"),
    ],
)
def test_parse_quantity(text: str | int | float, value: str) -> None:
    assert parse_quantity(text) == Decimal(value)


@pytest.mark.parametrize(
    "text", ["", "abc", "1 Gi", "1gi", "1GB", "Gi", "1e", "1.2.3", "--1", True, None, float("nan")]
)
def test_parse_quantity_rejects(text: object) -> None:
    with pytest.raises(ValueError):
        parse_quantity(text)  # type: ignore[arg-type]


def test_comparisons_are_exact() -> None:
    assert parse_quantity("1024Mi") == parse_quantity("1Gi")
    assert parse_quantity("999m") < parse_quantity("1")
    assert parse_quantity("1G") < parse_quantity("1Gi")
