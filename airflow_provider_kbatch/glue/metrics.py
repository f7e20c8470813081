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

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from airflow_provider_kbatch.spec.times import time_or_none
from airflow_provider_kbatch.status import job_end_time, pod_failures

log = logging.getLogger(__name__)

Kind = Literal["timer", "counter", "gauge"]


@dataclass(frozen=True)
class Metric:
    kind: Kind
    unit: str
    what: str
    tags: tuple[str, ...] = ()  # tags beyond the stage's (``dag_id``, ``task_id``, ``namespace``)
    live: bool = False  # sent while the Job runs (each progress line), not once per attempt


#: name (without the ``kbatch.`` prefix) -> what it is; the README's table is :func:`metrics_table`
METRICS: dict[str, Metric] = {
    "job.duration": Metric("timer", "ms", "Job `startTime` to `completionTime`, or to its `Failed` condition for a failed Job (Kubernetes keeps these times to the second)"),
    "job.queue_wait": Metric("timer", "ms", "time the Job waited suspended (e.g. in a Kueue queue)"),
    "job.succeeded": Metric("counter", "1", "attempts whose Job completed"),
    "job.failed": Metric("counter", "1", "attempts whose Job failed"),
    "index.failed": Metric("gauge", "indexes", "failed indexes of the attempt"),
    "index.failures": Metric("counter", "pods", "failed pods of the attempt by `reason` (`OOMKilled`, `Evicted`, `DeadlineExceeded`, `Error`, ...; disruptions included)", ("reason",)),
    "pod.retries": Metric("counter", "pods", "pods the attempt replaced: its failed pods (the Job's `status.failed`), each a retry spent or an index given up"),
    "stage.bytes": Metric("gauge", "bytes", "size of the stage's recorded output"),
    "stage.records": Metric("gauge", "records", "records of the stage's recorded output"),
    "results.bytes": Metric("gauge", "bytes", "size of the task's result (the XCom, JSON)"),
    "results.count": Metric("gauge", "results", "per-index results gathered (inline and in results ConfigMaps)"),
    "progress.completed": Metric("gauge", "indexes", "indexes completed so far", live=True),
    "progress.failed": Metric("gauge", "indexes", "indexes failed so far", live=True),
    "progress.active": Metric("gauge", "pods", "pods running or pending", live=True),
}  # fmt: skip

STAGE_TAGS = ("dag_id", "task_id", "namespace")


def prometheus_name(name: str) -> str:
    """The series name behind ``kbatch.<name>`` in Prometheus, through the statsd_exporter
    mapping of ``deploy/prometheus/statsd-mapping.yaml`` (:func:`statsd_mapping`): timers are
    histograms in seconds, counters end in ``_total``."""
    metric = METRICS[name]
    base = "kbatch_" + name.replace(".", "_")
    if metric.kind == "timer":
        return base + "_seconds"
    if metric.kind == "counter":
        return base + "_total"
    return base


def prometheus_series() -> set[str]:
    """Every series name a query may use (a histogram's ``_bucket``, ``_sum`` and ``_count``)."""
    names: set[str] = set()
    for name, metric in METRICS.items():
        base = prometheus_name(name)
        names |= {f"{base}_bucket", f"{base}_sum", f"{base}_count"} if metric.kind == "timer" else {base}
    return names


def metrics_table() -> str:
    """The README's metrics table (Markdown), from :data:`METRICS`."""
    rows = [
        "| name | kind | unit | tags | Prometheus (statsd_exporter mapping) | what |",
        "|---|---|---|---|---|---|",
    ]
    for name, metric in METRICS.items():
        tags = ", ".join(f"`{t}`" for t in (*STAGE_TAGS, *metric.tags))
        what = metric.what + (" (live: each progress line while the Job runs)" if metric.live else "")
        rows.append(
            f"| `kbatch.{name}` | {metric.kind} | {metric.unit} | {tags} | `{prometheus_name(name)}` | {what} |"
        )
    return "\n".join(rows) + "\n"


def statsd_mapping() -> str:
    """The statsd_exporter mapping (YAML) of the tagged names: Airflow's ``[metrics]
    statsd_prefix`` (``airflow``) + ``kbatch.<name>``, DogStatsD tags as labels (Airflow sends
    them with ``statsd_datadog_enabled = True``)."""
    lines = [
        "# Generated from airflow_provider_kbatch/glue/metrics.py (METRICS); tests/unit/glue/test_metrics.py",
        "# fails when it differs. statsd_exporter --statsd.mapping-config=statsd-mapping.yaml",
        "mappings:",
    ]
    for name, metric in METRICS.items():
        lines += [f'  - match: "airflow.kbatch.{name}"', f'    name: "{prometheus_name(name)}"']
        if metric.kind == "timer":
            lines += ["    observer_type: histogram", "    histogram_options:",
                      "      buckets: [0.5, 1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 21600]"]  # fmt: skip
        unit = "seconds" if metric.kind == "timer" else metric.unit
        lines.append(f'    help: "{metric.what.replace("`", "")} ({unit})"')
    lines += [
        "  # the untagged per-stage copies (kbatch.dag.<dag_id>.<task_id>.<name>) are for StatsD",
        "  # servers without tags; Prometheus has the labels, so drop them",
        "  - match: 'airflow\\.kbatch\\.dag\\..+'",
        "    match_type: regex",
        "    action: drop",
        '    name: "dropped"',
    ]
    return "\n".join(lines) + "\n"


_NOT_STAT = re.compile(r"[^A-Za-z0-9_.-]+")
_MAX_STAT = 250  # Airflow's stat name limit


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
    if job is not None:
        figures["pod.retries"] = float(status.get("failed") or 0)
    figures["results.bytes"] = float(len(json.dumps(result, separators=(",", ":"), default=str)))
    figures["results.count"] = float(result.get("results_total") or len(result.get("results") or {}))
    start, end = time_or_none(status.get("startTime")), job_end_time(status)
    if start is not None and end is not None:
        figures["job.duration"] = (end - start).total_seconds() * 1000
    figures["job.queue_wait"] = float(event.get("queued_seconds") or 0) * 1000
    figures["index.failed"] = float(_count(result.get("failed_indexes") or ""))
    for key in ("bytes", "records"):
        value = (result.get("output") or {}).get(key)
        if isinstance(value, int | float):
            figures[f"stage.{key}"] = float(value)
    return figures


def failure_reasons(pods: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Failed pods by reason (the pod's, else its container's; ``Error`` when neither says)."""
    reasons: dict[str, int] = {}
    for failure in pod_failures(pods):
        reason = _NOT_STAT.sub("_", failure.reason or "Error")
        reasons[reason] = reasons.get(reason, 0) + 1
    return reasons


def progress_metrics(outcome: Any) -> dict[str, float]:
    """The live figures of a running Job from its :class:`~airflow_provider_kbatch.status.JobOutcome`
    (pure; sent with :func:`emit_live`)."""
    completed = len(outcome.completed) if outcome.indexed else outcome.succeeded_pods
    return {
        "progress.completed": float(completed),
        "progress.failed": float(len(outcome.failed)),
        "progress.active": float(outcome.active),
    }


def live_observer(tags: dict[str, str], stats: Any = None) -> Any:
    """An ``on_progress`` callback for :func:`~airflow_provider_kbatch.engine.waiter.wait_for_job`."""
    return lambda outcome: emit_live(progress_metrics(outcome), tags=tags, stats=stats)


def stat_names(name: str, tags: Mapping[str, str]) -> tuple[str, str]:
    """The tagged name and the per-stage name of one metric (pure)."""
    per_stage = ".".join(
        _NOT_STAT.sub("_", part)
        for part in ("kbatch.dag", tags.get("dag_id", ""), tags.get("task_id", ""), name)
    )
    return f"kbatch.{name}", per_stage[:_MAX_STAT]


def _stats(stats: Any) -> Any:
    if stats is not None:
        return stats
    try:
        from airflow.providers.common.compat.sdk import Stats
    except ImportError:  # pragma: no cover - a task SDK without Stats
        return None
    return Stats


def _send(
    stats: Any, name: str, value: float, tags: dict[str, str], extra: dict[str, str] | None = None
) -> None:
    kind = METRICS[name].kind
    tagged, per_stage = stat_names(name, tags)
    if extra:  # the per-stage name carries the extra tags' values: ...index.failures.OOMKilled
        per_stage = ".".join([per_stage, *(_NOT_STAT.sub("_", v) for v in extra.values())])[:_MAX_STAT]
    for stat, stat_tags in ((tagged, {**tags, **(extra or {})}), (per_stage, None)):
        if kind == "timer":
            stats.timing(stat, value, tags=stat_tags)
        elif kind == "counter":
            stats.incr(stat, int(value), tags=stat_tags)
        else:
            stats.gauge(stat, value, tags=stat_tags)


def emit(
    figures: Mapping[str, float],
    *,
    succeeded: bool,
    tags: dict[str, str],
    stats: Any = None,
    reasons: Mapping[str, int] | None = None,
) -> None:
    """Send one attempt's figures, its success or failure count and its failed pods by reason
    (:func:`failure_reasons`); never fails the task."""
    stats = _stats(stats)
    if stats is None:
        return
    counts = {"job.succeeded" if succeeded else "job.failed": 1.0}
    try:
        for name, value in {**counts, **figures}.items():
            _send(stats, name, value, tags)
        for reason, count in (reasons or {}).items():
            _send(stats, "index.failures", float(count), tags, {"reason": reason})
    except Exception as err:  # metrics never fail a task
        log.warning("kbatch metrics not emitted: %s", err)


def emit_live(figures: Mapping[str, float], *, tags: dict[str, str], stats: Any = None) -> None:
    """Send the live figures of a running Job (:func:`progress_metrics`); never raises."""
    stats = _stats(stats)
    if stats is None:
        return
    try:
        for name, value in figures.items():
            _send(stats, name, value, tags)
    except Exception as err:  # metrics never fail a task
        log.warning("kbatch live metrics not emitted: %s", err)
