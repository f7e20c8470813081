"""A stage's OpenTelemetry spans, emitted through the tracer provider Airflow configured.

When ``[traces] otel_on`` is true Airflow installs an SDK ``TracerProvider`` with its exporter
(``OTEL_EXPORTER_OTLP_*``, ``OTEL_TRACES_EXPORTER``) in every component; kbatch asks that provider
for a tracer and builds no exporter of its own. With tracing off nothing here does any work: no
annotation, no ``TRACEPARENT``, no span.

The spans of one stage, all in the task's trace::

    task_run.<task_id>              Airflow's span of the task instance (its context carrier)
      kbatch.stage <task_id>        execute() start -> execute_complete() end; ERROR when it fails
        kbatch.validate             building and checking the stage, the server version
        kbatch.submit               plan, adopt or create, the ledger's attempt record
        kbatch.watch                the wait (in the triggerer when deferred, else the worker)
        kbatch.queue_wait           Job created -> startTime (suspended, e.g. in a Kueue queue)
        kbatch.run                  startTime -> completionTime or the Failed condition
          kbatch.index <i>          one per pod (index attempt): exit code, reason, phase
        kbatch.results              reading the outcome, the ledger, the results
        <the stage program's spans> the pods' ``TRACEPARENT`` names kbatch.stage

The stage span outlives the worker process that starts it (a deferred task resumes in another
one), so it is emitted at the end with its start time, under a span id chosen in ``execute`` and
carried through the deferral (``trace`` in the trigger's and ``execute_complete``'s kwargs):
the pods and the triggerer know it before the span exists. The Kubernetes-side spans are
emitted after the fact from the Job's and the pods' timestamps (one-second resolution).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_kbatch.engine.tracing import (
    SpanContextIds,
    SpanRecord,
    job_spans,
    parse_traceparent,
    traced_manifest,
)
from airflow_provider_kbatch.spec.intervals import IndexSet

log = logging.getLogger(__name__)

TRACER_NAME = "airflow_provider_kbatch"
_PRESET_SPAN_ID: contextvars.ContextVar[int | None] = contextvars.ContextVar("kbatch_span_id", default=None)


def tracing_on() -> bool:
    """True when the process has an SDK tracer provider (Airflow's ``[traces] otel_on``)."""
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError:  # pragma: no cover - OpenTelemetry comes with Airflow
        return False
    return isinstance(trace.get_tracer_provider(), TracerProvider)


class _PresetSpanIds:
    """The tracer's id generator, except for a span id set in :data:`_PRESET_SPAN_ID`."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def generate_span_id(self) -> int:
        preset = _PRESET_SPAN_ID.get()
        return preset if preset is not None else int(self.inner.generate_span_id())

    def generate_trace_id(self) -> int:
        return int(self.inner.generate_trace_id())

    def is_trace_id_random(self) -> bool:
        return bool(getattr(self.inner, "is_trace_id_random", lambda: True)())


def _tracer() -> Any:
    from opentelemetry import trace

    from airflow_provider_kbatch import __version__

    tracer = trace.get_tracer_provider().get_tracer(TRACER_NAME, __version__)
    inner = getattr(tracer, "id_generator", None)  # the SDK's Tracer; ours (cached per name)
    if inner is not None and not isinstance(inner, _PresetSpanIds):
        setattr(tracer, "id_generator", _PresetSpanIds(inner))  # noqa: B010 - an SDK Tracer attribute
    return tracer


def _context(traceparent: str) -> Any:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({"traceparent": traceparent})


def task_traceparent(context: Mapping[str, Any]) -> str | None:
    """The task's span: the task instance's context carrier (Airflow's ``task_run`` span, which
    covers every process of the try), else the current span (the worker's)."""
    carrier = getattr(context.get("ti"), "context_carrier", None)
    if isinstance(carrier, Mapping) and parse_traceparent(carrier.get("traceparent")) is not None:
        return str(carrier["traceparent"])
    from opentelemetry import trace

    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return SpanContextIds(
        span_context.trace_id, span_context.span_id, span_context.trace_flags.sampled
    ).traceparent


@dataclass
class StageTrace:
    """The spans of one stage while it runs: what ``execute`` measured, carried as plain JSON."""

    parent: str | None = None  # the task's traceparent; None: tracing off
    stage_span_id: int = 0
    started_ns: int = 0
    steps: dict[str, list[int]] = field(default_factory=dict)
    submitted_ns: int | None = None
    ended: bool = False

    @classmethod
    def begin(cls, context: Mapping[str, Any]) -> StageTrace:
        """Start the stage's trace (a disabled one when tracing is off or has no parent)."""
        try:
            parent = task_traceparent(context) if tracing_on() else None
        except Exception as err:  # tracing never fails a task
            log.warning("kbatch tracing off: %s", err)
            parent = None
        if parent is None:
            return cls()
        return cls(parent, random.getrandbits(63) | 1, time.time_ns())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> StageTrace:
        if not data or parse_traceparent(data.get("parent")) is None:
            return cls()
        return cls(
            parent=str(data["parent"]),
            stage_span_id=int(data.get("stage_span_id") or 0) or random.getrandbits(63) | 1,
            started_ns=int(data.get("started_ns") or time.time_ns()),
            steps={str(k): [int(v[0]), int(v[1])] for k, v in (data.get("steps") or {}).items()},
            submitted_ns=data.get("submitted_ns"),
        )

    def to_dict(self) -> dict[str, Any] | None:
        if self.parent is None:
            return None
        return {
            "parent": self.parent,
            "stage_span_id": self.stage_span_id,
            "started_ns": self.started_ns,
            "steps": self.steps,
            "submitted_ns": self.submitted_ns,
        }

    @property
    def enabled(self) -> bool:
        return self.parent is not None

    @property
    def traceparent(self) -> str | None:
        """The stage span's context: what the pods and the trigger get."""
        ids = parse_traceparent(self.parent)
        return (
            None if ids is None else SpanContextIds(ids.trace_id, self.stage_span_id, ids.sampled).traceparent
        )

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time one step of the stage (a ``kbatch.<name>`` span, emitted with the stage's)."""
        start = time.time_ns()
        try:
            yield
        finally:
            if self.enabled:
                self.steps[name] = [start, time.time_ns()]

    def start(self, name: str) -> None:
        """Begin a step that spans several statements (ended by :meth:`stop`)."""
        if self.enabled:
            self.steps[name] = [time.time_ns(), 0]

    def stop(self, name: str) -> None:
        if self.enabled and name in self.steps:
            self.steps[name][1] = time.time_ns()

    def manifest(self, manifest: dict[str, Any], *, created: bool = True) -> dict[str, Any]:
        """The manifest with the stage's trace context (unchanged when tracing is off)."""
        if created:
            self.submitted_ns = time.time_ns()
        traceparent = self.traceparent
        return manifest if traceparent is None else traced_manifest(manifest, traceparent)

    def end(
        self,
        task_id: str,
        *,
        job: Mapping[str, Any] | None = None,
        pods: Sequence[Mapping[str, Any]] | None = None,
        index_map: IndexSet | None = None,
        error: BaseException | str | None = None,
        attributes: Mapping[str, str | int | bool] | None = None,
    ) -> None:
        """Emit the stage span and its children; once, and never raising."""
        if not self.enabled or self.ended:
            return
        self.ended = True
        try:
            now = time.time_ns()
            records = [SpanRecord(f"kbatch.{name}", s, e or now) for name, (s, e) in self.steps.items()]
            if job is not None:
                records += job_spans(
                    job,
                    pods or [],
                    index_map=index_map,
                    submitted_ns=self.submitted_ns,
                    now_ns=time.time_ns(),
                )
            _emit(self, task_id, records, error, dict(attributes or {}))
        except Exception as err:  # tracing never fails a task
            log.warning("kbatch spans not emitted: %s", err)


def _emit(
    stage: StageTrace,
    task_id: str,
    records: list[SpanRecord],
    error: BaseException | str | None,
    attributes: dict[str, str | int | bool],
) -> None:
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode

    tracer = _tracer()
    assert stage.parent is not None
    token = _PRESET_SPAN_ID.set(stage.stage_span_id)
    try:
        span = tracer.start_span(
            f"kbatch.stage {task_id}",
            context=_context(stage.parent),
            start_time=stage.started_ns,
            attributes={"airflow.task_id": task_id, **attributes},
        )
    finally:
        _PRESET_SPAN_ID.reset(token)
    parents = {"stage": trace.set_span_in_context(span)}
    for record in sorted(records, key=lambda r: (r.parent != "stage", r.start_ns)):
        child = tracer.start_span(
            record.name,
            context=parents.get(record.parent, parents["stage"]),
            start_time=record.start_ns,
            attributes=record.attributes,
        )
        if record.error:
            child.set_status(Status(StatusCode.ERROR, record.error))
        if record.name == "kbatch.run":
            parents["run"] = trace.set_span_in_context(child)
        child.end(end_time=record.end_ns)
    if error is not None:
        span.set_status(Status(StatusCode.ERROR, str(error)[:500]))
    span.end()


@contextlib.contextmanager
def watch_span(traceparent: str | None, **attributes: str) -> Iterator[None]:
    """A ``kbatch.watch`` span under the stage span around the wait (a no-op when off)."""
    if traceparent is None or parse_traceparent(traceparent) is None or not tracing_on():
        yield
        return
    try:
        span = _tracer().start_span("kbatch.watch", context=_context(traceparent), attributes=attributes)
    except Exception as err:  # tracing never fails a task
        log.warning("kbatch watch span not started: %s", err)
        yield
        return
    try:
        yield
    finally:
        span.end()  # exported by Airflow's batch processor (never flushed here: no blocking in a triggerer)
