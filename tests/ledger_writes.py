"""What a producing stage writes to its run's ledger, for tests that stand in for the producer."""

from __future__ import annotations

from typing import Any

from airflow_provider_kbatch.pipeline import records as rules


def stage_written(
    data: dict[str, str], task_id: str, *, output: dict[str, Any] | None = None, succeeded: bool | None = None
) -> dict[str, str]:
    """``data`` after ``task_id`` started, and, unless ``succeeded`` is None, finished with ``output``."""
    key = rules.stage_key(task_id)
    data = rules.record_attempt_started(
        data, key, try_number=1, job="j", uid="u", spec_hash="h", index_map="0-1", at="t", task_id=task_id
    )
    if succeeded is None:
        return data
    return rules.record_attempt_finished(
        data, key, job="j", uid="u", succeeded=succeeded, at="t", output=output if succeeded else None
    )
