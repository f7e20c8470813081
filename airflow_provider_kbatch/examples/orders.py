"""Synthetic orders shared by the example pipeline stages (and by the tests that check their sums).

Order ``n`` is a pure function of ``n``, so any stage -- or a test -- can recompute what the
pipeline must produce without reading its output.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CATEGORIES = ("books", "games", "tools")
ORDERS_PER_INDEX = 50
MIN_AMOUNT_CENTS = 100  # transform drops smaller orders
FEE_PERCENT = 10  # transform keeps net = amount - fee


def order_id(index: int, j: int) -> int:
    return index * 1000 + j


def make_order(oid: int, *, amount_as: str = "int") -> dict[str, Any]:
    amount = (oid * 37) % 10000
    return {
        "order_id": oid,
        "customer": f"c{oid % 17}",
        "amount_cents": str(amount) if amount_as == "str" else amount,
        "category": CATEGORIES[oid % len(CATEGORIES)],
    }


def clean(order: dict[str, Any]) -> dict[str, Any] | None:
    """The transform of one order: ``None`` when dropped."""
    amount = int(order["amount_cents"])
    if amount < MIN_AMOUNT_CENTS:
        return None
    return {
        "order_id": order["order_id"],
        "category": order["category"],
        "amount_cents": amount,
        "net_cents": amount - amount * FEE_PERCENT // 100,
    }


def expected_report(indexes: int, per_index: int = ORDERS_PER_INDEX) -> dict[str, dict[str, int]]:
    """category -> {"orders", "net_cents"} the publish stage must report for ``indexes`` ingest indexes."""
    report = {c: {"orders": 0, "net_cents": 0} for c in CATEGORIES}
    for i in range(indexes):
        for j in range(per_index):
            row = clean(make_order(order_id(i, j)))
            if row is not None:
                report[row["category"]]["orders"] += 1
                report[row["category"]]["net_cents"] += row["net_cents"]
    return report


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)
