from __future__ import annotations

import pytest

from airflow_provider_kbatch import runtime

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_trace_context_of_a_traced_pod() -> None:
    env = {"TRACEPARENT": PARENT, "TRACESTATE": "airflow/task_span_detail_level=1"}
    assert runtime.traceparent(env) == PARENT
    assert runtime.trace_context(env) == {
        "traceparent": PARENT,
        "tracestate": "airflow/task_span_detail_level=1",
    }
    assert runtime.trace_id(env) == "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize(
    "value", ["", "nonsense", PARENT.replace("4bf9", "XXXX"), "00-" + "0" * 32 + "-00f067aa0ba902b7-01"]
)
def test_no_or_malformed_context_is_empty(value: str) -> None:
    env = {"TRACEPARENT": value} if value else {}
    assert runtime.traceparent(env) is None
    assert runtime.trace_context(env) == {}
    assert runtime.trace_id(env) is None


def test_a_w3c_propagator_reads_the_carrier() -> None:
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    context = TraceContextTextMapPropagator().extract(runtime.trace_context({"TRACEPARENT": PARENT}))
    span_context = trace.get_current_span(context).get_span_context()
    assert (span_context.trace_id, span_context.span_id) == (
        0x4BF92F3577B34DA6A3CE929D0E0E4736,
        0x00F067AA0BA902B7,
    )
