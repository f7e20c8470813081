"""The trace of one stage, as data (pure: no OpenTelemetry, Airflow or Kubernetes import).

:mod:`airflow_provider_kbatch.glue.tracing` turns these records into OpenTelemetry spans. Here:

* W3C ``traceparent`` strings (``00-<32 hex trace id>-<16 hex span id>-<2 hex flags>``): parse and
  format;
* :func:`traced_manifest`: the Job manifest with the stage span's context -- the annotation
  :data:`TRACEPARENT_ANNOTATION` on the Job and its pod template, ``TRACEPARENT`` in the
  environment of every container (read in the pod by ``runtime.trace_context()``);
* :func:`job_spans`: the spans read from a finished Job and its pods, after the fact and with
  the Kubernetes timestamps as start and end (one-second resolution): the queue wait (Job
  created -> ``startTime``), the run (``startTime`` -> ``completionTime`` or the ``Failed``
  condition) and one span per index attempt (one pod: start, end, exit code, reason).
"""

from __future__ import annotations

import copy
import datetime
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from airflow_provider_kbatch.spec.intervals import IndexSet
from airflow_provider_kbatch.spec.times import time_or_none
from airflow_provider_kbatch.status import job_end_time, logical_index

TRACEPARENT_ANNOTATION = "kbatch.io/traceparent"
TRACEPARENT_ENV = "TRACEPARENT"
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")

Parent = Literal["stage", "run"]


@dataclass(frozen=True)
class SpanContextIds:
    trace_id: int
    span_id: int
    sampled: bool

    @property
    def traceparent(self) -> str:
        return format_traceparent(self.trace_id, self.span_id, self.sampled)


def format_traceparent(trace_id: int, span_id: int, sampled: bool) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{'01' if sampled else '00'}"


def parse_traceparent(value: object) -> SpanContextIds | None:
    """The ids of a version-00 ``traceparent``; ``None`` for anything else (all-zero ids too)."""
    if not isinstance(value, str):
        return None
    match = _TRACEPARENT.match(value.strip())
    if match is None:
        return None
    trace_id, span_id = int(match[1], 16), int(match[2], 16)
    if trace_id == 0 or span_id == 0:
        return None
    return SpanContextIds(trace_id, span_id, bool(int(match[3], 16) & 1))


def traced_manifest(manifest: Mapping[str, Any], traceparent: str) -> dict[str, Any]:
    """A copy of ``manifest`` carrying ``traceparent``: an annotation on the Job and on its pod
    template, and ``TRACEPARENT`` in every container and init container (replacing one set by
    the author, whose value would name another trace)."""
    job = copy.deepcopy(dict(manifest))
    job.setdefault("metadata", {}).setdefault("annotations", {})[TRACEPARENT_ANNOTATION] = traceparent
    template = job.setdefault("spec", {}).setdefault("template", {})
    template.setdefault("metadata", {}).setdefault("annotations", {})[TRACEPARENT_ANNOTATION] = traceparent
    pod = template.setdefault("spec", {})
    for kind in ("initContainers", "containers"):
        for container in pod.get(kind) or ():
            env = [e for e in container.get("env") or () if e.get("name") != TRACEPARENT_ENV]
            container["env"] = [*env, {"name": TRACEPARENT_ENV, "value": traceparent}]
    return job


@dataclass(frozen=True)
class SpanRecord:
    """One span to emit: times in epoch nanoseconds, ``parent`` names the kbatch span above."""

    name: str
    start_ns: int
    end_ns: int
    parent: Parent = "stage"
    attributes: dict[str, str | int | bool] = field(default_factory=dict)
    error: str | None = None


def _ns(value: datetime.datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1_000_000_000)


def job_spans(
    job: Mapping[str, Any],
    pods: Iterable[Mapping[str, Any]],
    *,
    index_map: IndexSet | None,
    submitted_ns: int | None,
    now_ns: int,
) -> list[SpanRecord]:
    """The queue wait, the run and the index attempts of a finished Job.

    ``submitted_ns``: when this try created the Job (our clock, to the nanosecond); ``None``
    for an adopted Job, whose queue wait starts at its ``creationTimestamp``. Kubernetes times
    have a resolution of one second, so every span is clamped to start no earlier than the one
    it follows."""
    meta, status = job.get("metadata") or {}, job.get("status") or {}
    created = _ns(time_or_none(meta.get("creationTimestamp")))
    queued_from = submitted_ns if submitted_ns is not None else created if created is not None else now_ns
    started = _ns(time_or_none(status.get("startTime")))
    run_from = max(queued_from, started if started is not None else now_ns)
    run_to = max(run_from, _ns(job_end_time(status)) or now_ns)
    failed = next(
        (
            c
            for c in status.get("conditions") or ()
            if c.get("type") == "Failed" and c.get("status") == "True"
        ),
        None,
    )
    spans = [
        SpanRecord(
            "kbatch.queue_wait",
            queued_from,
            run_from,
            "stage",
            {"kbatch.suspended": bool(status.get("startTime") is None)},
        ),
        SpanRecord(
            "kbatch.run",
            run_from,
            run_to,
            "stage",
            {
                "kbatch.succeeded_pods": int(status.get("succeeded") or 0),
                "kbatch.failed_pods": int(status.get("failed") or 0),
                "kbatch.completed_indexes": str(status.get("completedIndexes") or ""),
                "kbatch.failed_indexes": str(status.get("failedIndexes") or ""),
            },
            error=None
            if failed is None
            else f"{failed.get('reason')}: {failed.get('message') or ''}".strip(),
        ),
    ]
    spans.extend(attempt_spans(pods, index_map=index_map, floor_ns=run_from, now_ns=run_to))
    return spans


def _terminated(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    for cs in (pod.get("status") or {}).get("containerStatuses") or ():
        state = cs.get("state") or {}
        term = state.get("terminated") or (cs.get("lastState") or {}).get("terminated")
        if term:
            return dict(term)
    return {}


#: Within one index, at equal (one-second) times: a failed pod came before the one still
#: running, which came before the one that succeeded (a success ends the index).
_PHASE_ORDER = {"Failed": 0, "Succeeded": 2}


def attempt_spans(
    pods: Iterable[Mapping[str, Any]], *, index_map: IndexSet | None, floor_ns: int, now_ns: int
) -> list[SpanRecord]:
    """One ``kbatch.index`` span per pod (an index attempt), ordered by index then attempt.

    Kubernetes times have a resolution of one second, so two attempts of an index can tie: the
    tie is broken by phase (failed, running, succeeded), each attempt is numbered
    (``kbatch.attempt``, from 1) and starts no earlier than the previous attempt ended."""
    found: list[tuple[int, int, int, int, str, dict[str, str | int | bool], str | None]] = []
    for pod in pods:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        term = _terminated(pod)
        index = logical_index(pod, index_map)
        start = _ns(
            time_or_none(term.get("startedAt") or status.get("startTime") or meta.get("creationTimestamp"))
        )
        start = max(floor_ns, start if start is not None else floor_ns)
        end = max(start, _ns(time_or_none(term.get("finishedAt"))) or now_ns)
        exit_code = term.get("exitCode")
        phase = str(status.get("phase") or "")
        reason = status.get("reason") or term.get("reason")
        attributes: dict[str, str | int | bool] = {
            "kbatch.pod": str(meta.get("name") or ""),
            "kbatch.phase": phase,
        }
        if index is not None:
            attributes["kbatch.index"] = index
        if isinstance(exit_code, int):
            attributes["kbatch.exit_code"] = exit_code
        if reason:
            attributes["kbatch.reason"] = str(reason)
        error = None
        if phase == "Failed":
            error = f"exit code {exit_code}" + (f" ({reason})" if reason else "")
        name = "kbatch.index" if index is None else f"kbatch.index {index}"
        key = -1 if index is None else index
        found.append((key, start, _PHASE_ORDER.get(phase, 1), end, name, attributes, error))
    spans: list[SpanRecord] = []
    previous: tuple[int, int, int] | None = None  # (index, attempt, end) of the span before
    for key, start, _, end, name, attributes, error in sorted(found, key=lambda item: item[:4]):
        attempt = 1
        if previous is not None and previous[0] == key:
            attempt = previous[1] + 1
            start = max(start, previous[2])
            end = max(start, end)
        attributes["kbatch.attempt"] = attempt
        spans.append(SpanRecord(name, start, end, "run", attributes, error))
        previous = (key, attempt, end)
    return spans
