"""Stage metrics through Airflow's Stats (StatsD / OpenTelemetry, whatever the deployment set up).

Names (tags: dag_id, task_id, namespace; StatsD without tag support gets them in the name):
``kbatch.job.duration`` (ms, startTime to completionTime), ``kbatch.job.queue_wait`` (ms spent
suspended, e.g. in a Kueue queue), ``kbatch.job.succeeded`` / ``kbatch.job.failed`` (count),
``kbatch.index.failed`` (failed indexes of the attempt), ``kbatch.stage.bytes`` /
``kbatch.stage.records`` (output size, from the ledger).
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

log = logging.getLogger(__name__)


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    parse = datetime.datetime.fromisoformat
    try:
        return (parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds()
    except ValueError:
        return None


def stage_metrics(
    job: dict[str, Any] | None, event: dict[str, Any], result: dict[str, Any]
) -> dict[str, float]:
    """The figures of one finished attempt (pure; emitted by :func:`emit`)."""
    status = (job or {}).get("status", {})
    figures: dict[str, float] = {}
    duration = _seconds_between(status.get("startTime"), status.get("completionTime"))
    if duration is not None:
        figures["kbatch.job.duration"] = duration * 1000
    figures["kbatch.job.queue_wait"] = float(event.get("queued_seconds") or 0) * 1000
    failed = result.get("failed_indexes") or ""
    figures["kbatch.index.failed"] = float(sum(
        (int(b) - int(a) + 1) if "-" in part else 1
        for part in failed.split(",") if part
        for a, _, b in [part.partition("-")]
    ))  # fmt: skip
    for key in ("bytes", "records"):
        value = (result.get("output") or {}).get(key)
        if isinstance(value, int | float):
            figures[f"kbatch.stage.{key}"] = float(value)
    return figures


def emit(figures: dict[str, float], *, succeeded: bool, tags: dict[str, str]) -> None:
    try:
        from airflow.sdk.observability.stats import Stats
    except ImportError:  # pragma: no cover - older task SDKs
        return
    try:
        Stats.incr("kbatch.job.succeeded" if succeeded else "kbatch.job.failed", tags=tags)
        for name, value in figures.items():
            if name in ("kbatch.job.duration", "kbatch.job.queue_wait"):
                Stats.timing(name, value, tags=tags)
            else:
                Stats.gauge(name, value, tags=tags)
    except Exception as err:  # metrics never fail a task
        log.debug("metrics not emitted: %s", err)
