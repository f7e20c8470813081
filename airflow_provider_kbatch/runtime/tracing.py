"""The stage's trace context inside the container (standard library only).

When Airflow's OpenTelemetry tracing is on, ``KbatchJobOperator`` sets ``TRACEPARENT`` (W3C
Trace Context) in every container: the context of the stage's ``kbatch.stage`` span. A stage
program that has OpenTelemetry adds its spans to the task's trace with it::

    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    from airflow_provider_kbatch import runtime

    parent = TraceContextTextMapPropagator().extract(runtime.trace_context())
    with trace.get_tracer("my-stage").start_as_current_span("load", context=parent):
        ...

Without tracing (or outside a kbatch pod) :func:`trace_context` is empty and
:func:`traceparent` is ``None``, so the same program runs untraced.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

TRACEPARENT = "TRACEPARENT"
TRACESTATE = "TRACESTATE"
_TRACEPARENT = re.compile(r"^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")


def traceparent(env: Mapping[str, str] | None = None) -> str | None:
    """The W3C ``traceparent`` of the stage span, or ``None`` (unset or malformed)."""
    value = (os.environ if env is None else env).get(TRACEPARENT, "").strip()
    return value if _TRACEPARENT.match(value) else None


def trace_context(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """A carrier for any W3C propagator: ``{"traceparent": ..., "tracestate": ...}``; empty when
    the pod has no (valid) trace context."""
    parent = traceparent(env)
    if parent is None:
        return {}
    carrier = {"traceparent": parent}
    state = (os.environ if env is None else env).get(TRACESTATE, "").strip()
    if state:
        carrier["tracestate"] = state
    return carrier


def trace_id(env: Mapping[str, str] | None = None) -> str | None:
    """The 32-hex-digit trace id (the Airflow task's trace), e.g. to log next to a record."""
    parent = traceparent(env)
    return None if parent is None else parent.split("-")[1]
