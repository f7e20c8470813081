"""Stage metrics through Airflow's Stats (StatsD, Datadog or OpenTelemetry: whatever the
deployment configured under ``[metrics]``).

:data:`METRICS` is the one table of names, kinds and units; the README's metrics table is
checked against it in the tests. Every figure is emitted twice, the way Airflow's own task
metrics are (``ti.finish`` with tags, ``ti.finish.<dag_id>.<task_id>.<state>`` without):

* ``kbatch.<name>`` with the tags ``dag_id``, ``task_id``, ``namespace`` (Datadog, OpenTelemetry
  and StatsD with ``statsd_influxdb_enabled`` keep them);
* ``kbatch.dag.<dag_id>.<task_id>.<name>`` without tags, so a plain StatsD server (which drops
  tags) still tells one stage from another.

Durations are milliseconds between Kubernetes timestamps, which the API server keeps with a
resolution of one second: a Job's ``startTime`` to its ``completionTime``, or, for a failed Job
(which has no completion time), to its ``Failed`` condition's ``lastTransitionTime``.
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Mapping
from typing import Any, Literal

from airflow_provider_kbatch.spec.times import time_or_none

log = logging.getLogger(__name__)

Kind = Literal["timer", "counter", "gauge"]

#: name (without the ``kbatch.`` prefix) -> (kind, unit, what it measures)
METRICS: dict[str, tuple[Kind, str, str]] = {
    "job.duration": ("timer", "ms", "Job startTime to completionTime (or to its Failed condition)"),
    "job.queue_wait": ("timer", "ms", "time the Job waited suspended (e.g. in a Kueue queue)"),
    "job.succeeded": ("counter", "1", "attempts whose Job completed"),
    "job.failed": ("counter", "1", "attempts whose Job failed"),
    "index.failed": ("gauge", "indexes", "failed indexes of the attempt"),
    "stage.bytes": ("gauge", "bytes", "size of the stage's recorded output"),
    "stage.records": ("gauge", "records", "records of the stage's recorded output"),
}

_NOT_STAT = re.compile(r"[^A-Za-z0-9_.-]+")
_MAX_STAT = 250  # Airflow's stat name limit


def _end_time(status: Mapping[str, Any]) -> datetime.datetime | None:
    end = time_or_none(status.get("completionTime"))
    if end is not None:
        return end
    for cond in status.get("conditions") or ():
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return time_or_none(cond.get("lastTransitionTime"))
    return None


def _count(indexes: str) -> int:
    total = 0
    for part in filter(None, indexes.split(",")):
        first, _, last = part.partition("-")
        total += int(last) - int(first) + 1 if last else 1
    return total


def stage_metrics(
    job: dict[str, Any] | None, event: dict[str, Any], result: dict[str, Any]
) -> dict[str, float]:
    """The figures of one finished attempt, by name without the prefix (pure; see :func:`emit`)."""
    status = (job or {}).get("status") or {}
    figures: dict[str, float] = {}
    start, end = time_or_none(status.get("startTime")), _end_time(status)
    if start is not None and end is not None:
        figures["job.duration"] = (end - start).total_seconds() * 1000
    figures["job.queue_wait"] = float(event.get("queued_seconds") or 0) * 1000
    figures["index.failed"] = float(_count(result.get("failed_indexes") or ""))
    for key in ("bytes", "records"):
        value = (result.get("output") or {}).get(key)
        if isinstance(value, int | float):
            figures[f"stage.{key}"] = float(value)
    return figures


def stat_names(name: str, tags: Mapping[str, str]) -> tuple[str, str]:
    """The tagged name and the per-stage name of one metric (pure)."""
    per_stage = ".".join(
        _NOT_STAT.sub("_", part)
        for part in ("kbatch.dag", tags.get("dag_id", ""), tags.get("task_id", ""), name)
    )
    return f"kbatch.{name}", per_stage[:_MAX_STAT]


def emit(figures: Mapping[str, float], *, succeeded: bool, tags: dict[str, str], stats: Any = None) -> None:
    """Send one attempt's figures and its success or failure count; never fails the task."""
    if stats is None:
        try:
            from airflow.providers.common.compat.sdk import Stats as stats
        except ImportError:  # pragma: no cover - a task SDK without Stats
            return
    counts = {"job.succeeded" if succeeded else "job.failed": 1.0}
    try:
        for name, value in {**counts, **figures}.items():
            kind = METRICS[name][0]
            tagged, per_stage = stat_names(name, tags)
            for stat, stat_tags in ((tagged, tags), (per_stage, None)):
                if kind == "timer":
                    stats.timing(stat, value, tags=stat_tags)
                elif kind == "counter":
                    stats.incr(stat, int(value), tags=stat_tags)
                else:
                    stats.gauge(stat, value, tags=stat_tags)
    except Exception as err:  # metrics never fail a task
        log.warning("kbatch metrics not emitted: %s", err)
