"""The run ledger's size budget (pure): one record bounded when it is written
(:func:`compact_record`), the whole map by :func:`shrink`, which takes the oldest history first
in the order :data:`SHRINK_STEPS` (the order is stated in
:mod:`airflow_provider_kbatch.pipeline.records`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from airflow_provider_kbatch.pipeline.ledger_names import stage_keys
from airflow_provider_kbatch.pipeline.ledger_schema import (
    LEDGER_BUDGET_BYTES,
    MAX_ATTEMPTS,
    MAX_OBJECT_BYTES,
    MAX_TRANSITIONS,
    LedgerTooLarge,
    dump,
    load_record,
)


def _size(raw: Mapping[str, Any]) -> int:
    return len(dump(raw).encode("utf-8"))


def compact_record(raw: dict[str, Any], budget: int) -> dict[str, Any]:
    """Bound a record: cap transitions and attempts; past ``budget`` bytes, elide attempt sets
    (oldest attempts first; the latest attempt keeps its ``index_map``), then drop results."""
    for field, cap in (("transitions", MAX_TRANSITIONS), ("attempts", MAX_ATTEMPTS)):
        items = raw.get(field, [])
        if len(items) > cap:
            raw[f"{field}_dropped"] = raw.get(f"{field}_dropped", 0) + len(items) - cap
            raw[field] = items[-cap:]
    if _size(raw) <= budget:
        return raw
    attempts = raw.get("attempts", [])
    steps = [(a, f) for a in attempts[:-1] for f in ("completed", "failed", "index_map")]
    if attempts:
        steps += [(attempts[-1], "failed"), (attempts[-1], "completed")]
    for attempt, field in steps:
        if attempt.get(field) is not None:
            attempt[field] = None
            if _size(raw) <= budget:
                return raw
    _drop_results(raw)
    return raw


def _elide(attempt: dict[str, Any], fields: tuple[str, ...]) -> bool:
    """Elide the attempt's non-empty index sets (an empty one is shorter than ``null``)."""
    found = [f for f in fields if attempt.get(f)]
    attempt.update(dict.fromkeys(found))
    return bool(found)


def _elide_earlier_sets(raw: dict[str, Any]) -> bool:
    changed = [_elide(a, ("completed", "failed", "index_map")) for a in raw.get("attempts", [])[:-1]]
    return any(changed)


def _drop_earlier_history(raw: dict[str, Any]) -> bool:
    attempts = raw.get("attempts", [])
    kept = [a for a in attempts[:-1] if a.get("ended") is None] + attempts[-1:]
    transitions = raw.get("transitions", [])
    if len(kept) == len(attempts) and len(transitions) <= 1:
        return False
    raw["attempts_dropped"] = raw.get("attempts_dropped", 0) + len(attempts) - len(kept)
    raw["attempts"] = kept
    raw["transitions_dropped"] = raw.get("transitions_dropped", 0) + max(0, len(transitions) - 1)
    raw["transitions"] = transitions[-1:]
    return True


def _drop_results(raw: dict[str, Any]) -> bool:
    if not raw.get("results"):
        return False
    raw["results"] = {}
    raw["results_truncated"] = True
    return True


def _elide_latest_sets(raw: dict[str, Any]) -> bool:
    return bool(raw.get("attempts")) and _elide(raw["attempts"][-1], ("completed", "failed"))


#: What :func:`shrink` takes, in this order (see the module docstring).
SHRINK_STEPS: tuple[Callable[[dict[str, Any]], bool], ...] = (
    _elide_earlier_sets,
    _drop_earlier_history,
    _drop_results,
    _elide_latest_sets,
)


def _entry_size(key: str, value: str) -> int:
    return len(key.encode("utf-8")) + len(value.encode("utf-8"))


def ledger_size(data: Mapping[str, str]) -> int:
    """Bytes the ``data`` map occupies (keys and values, UTF-8)."""
    return sum(_entry_size(k, v) for k, v in data.items())


def check_size(data: Mapping[str, str], budget: int = LEDGER_BUDGET_BYTES) -> None:
    """Raise :class:`LedgerTooLarge` (naming the largest records) when ``data`` exceeds ``budget``."""
    size = ledger_size(data)
    if size <= budget:
        return
    largest = sorted(data, key=lambda k: len(data[k]), reverse=True)[:3]
    raise LedgerTooLarge(
        f"ledger data is {size} bytes, over the budget of {budget} (object limit {MAX_OBJECT_BYTES}); "
        f"largest records: {', '.join(f'{k} ({len(data[k])} bytes)' for k in largest)}"
    )


def _age(text: str) -> str:
    try:
        return str(json.loads(text).get("updated_at") or "")
    except (ValueError, AttributeError):
        return ""


def shrink(data: Mapping[str, str], budget: int = LEDGER_BUDGET_BYTES) -> dict[str, str]:
    """``data`` within ``budget`` bytes: unchanged when it fits, else with the oldest history taken
    first (the stage records from the least to the most recently updated, :data:`SHRINK_STEPS` in
    turn on each, stopping as soon as it fits). Keeps what resume, hand-off and lineage need;
    raises :class:`LedgerTooLarge` when even that does not fit. Pure and deterministic: every
    ledger write applies it to what its merge rule returned."""
    out = dict(data)
    size = ledger_size(out)
    if size <= budget:
        return out
    keys = sorted(stage_keys(out), key=lambda k: (_age(out[k]), k))
    for key in keys:
        raw = load_record(out[key])
        for step in SHRINK_STEPS:
            if not step(raw):
                continue
            text = dump(raw)
            size += _entry_size(key, text) - _entry_size(key, out[key])
            out[key] = text
            if size <= budget:
                return out
    check_size(out, budget)
    return out
