"""The stage's trace: the pure pieces (engine/tracing.py) and the spans glue/tracing.py emits
through an SDK tracer provider (the kind Airflow installs with ``[traces] otel_on``), read back
from OpenTelemetry's in-memory exporter."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from airflow_provider_kbatch.engine.tracing import (
    TRACEPARENT_ANNOTATION,
    attempt_spans,
    job_spans,
    parse_traceparent,
    traced_manifest,
)
from airflow_provider_kbatch.glue import tracing
from airflow_provider_kbatch.glue.tracing import StageTrace, watch_span
from airflow_provider_kbatch.spec.intervals import IndexSet

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE}-00f067aa0ba902b7-01"
S = 1_000_000_000


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (PARENT, (int(TRACE, 16), 0x00F067AA0BA902B7, True)),
        (f"00-{TRACE}-00f067aa0ba902b7-00", (int(TRACE, 16), 0x00F067AA0BA902B7, False)),
        (f"00-{'0' * 32}-00f067aa0ba902b7-01", None),  # all-zero trace id
        (f"00-{TRACE}-{'0' * 16}-01", None),
        (f"01-{TRACE}-00f067aa0ba902b7-01", None),  # unknown version
        ("garbage", None),
        (None, None),
    ],
)
def test_parse_traceparent(value: Any, expected: Any) -> None:
    ids = parse_traceparent(value)
    assert (None if ids is None else (ids.trace_id, ids.span_id, ids.sampled)) == expected
    if ids is not None:
        assert ids.traceparent == value


def test_traced_manifest_annotates_and_sets_traceparent_in_every_container() -> None:
    manifest = {
        "metadata": {"name": "j"},
        "spec": {
            "template": {
                "spec": {
                    "initContainers": [{"name": "init"}],
                    "containers": [
                        {
                            "name": "main",
                            "env": [{"name": "TRACEPARENT", "value": "stale"}, {"name": "A", "value": "1"}],
                        },
                        {"name": "side"},
                    ],
                }
            }
        },
    }
    traced = traced_manifest(manifest, PARENT)
    assert traced["metadata"]["annotations"][TRACEPARENT_ANNOTATION] == PARENT
    assert traced["spec"]["template"]["metadata"]["annotations"][TRACEPARENT_ANNOTATION] == PARENT
    pod = traced["spec"]["template"]["spec"]
    for container in [*pod["initContainers"], *pod["containers"]]:
        assert [e for e in container["env"] if e["name"] == "TRACEPARENT"] == [
            {"name": "TRACEPARENT", "value": PARENT}
        ]
    assert {"name": "A", "value": "1"} in pod["containers"][0]["env"]
    assert "annotations" not in manifest["metadata"]  # a copy


def pod(
    name: str, index: int, start: str, end: str, code: int, phase: str, reason: str | None = None
) -> dict[str, Any]:
    term = {"startedAt": start, "finishedAt": end, "exitCode": code}
    if reason:
        term["reason"] = reason
    return {
        "metadata": {"name": name, "labels": {"batch.kubernetes.io/job-completion-index": str(index)}},
        "status": {"phase": phase, "containerStatuses": [{"name": "main", "state": {"terminated": term}}]},
    }


def test_job_spans_from_a_failed_job_and_its_pods() -> None:
    job = {
        "metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"},
        "status": {
            "startTime": "2026-01-01T00:00:02Z",
            "failed": 2,
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "lastTransitionTime": "2026-01-01T00:00:09Z",
                }
            ],
        },
    }
    base = 1767225600 * S  # 2026-01-01T00:00:00Z
    pods = [
        pod("p1b", 1, "2026-01-01T00:00:05Z", "2026-01-01T00:00:08Z", 137, "Failed", "OOMKilled"),
        pod("p0", 0, "2026-01-01T00:00:02Z", "2026-01-01T00:00:04Z", 0, "Succeeded"),
        pod("p1a", 1, "2026-01-01T00:00:02Z", "2026-01-01T00:00:04Z", 3, "Failed"),
    ]
    # a resumed attempt: Job-local index k runs logical index map.nth(k)
    spans = job_spans(
        job, pods, index_map=IndexSet.parse("4,7"), submitted_ns=base + S // 2, now_ns=base + 60 * S
    )
    by_name = {s.name: s for s in spans}
    queue, run = by_name["kbatch.queue_wait"], by_name["kbatch.run"]
    assert (queue.start_ns, queue.end_ns) == (base + S // 2, base + 2 * S)
    assert (run.start_ns, run.end_ns) == (base + 2 * S, base + 9 * S)
    assert run.error and "BackoffLimitExceeded" in run.error
    attempts = [s for s in spans if s.parent == "run"]
    assert [(s.name, s.attributes["kbatch.exit_code"], s.error) for s in attempts] == [
        ("kbatch.index 4", 0, None),
        ("kbatch.index 7", 3, "exit code 3"),
        ("kbatch.index 7", 137, "exit code 137 (OOMKilled)"),
    ]
    assert attempts[2].attributes["kbatch.reason"] == "OOMKilled"


def test_times_are_clamped_to_the_run_and_unfinished_pods_end_now() -> None:
    running = {"metadata": {"name": "p", "labels": {"batch.kubernetes.io/job-completion-index": "0"}},
               "status": {"phase": "Running", "startTime": "2026-01-01T00:00:00Z"}}  # fmt: skip
    base = 1767225600 * S  # the pod started a second before the Job's startTime said the run did
    [span] = attempt_spans([running], index_map=None, floor_ns=base + S, now_ns=base + 9 * S)
    assert (span.start_ns, span.end_ns, span.error) == (base + S, base + 9 * S, None)


def test_attempts_of_an_index_that_tie_to_the_second_keep_their_order() -> None:
    # the failed pod and its replacement started and ended in the same second; the list from the
    # API server comes in name order, which says nothing about time
    base = 1767225600 * S
    pods = [
        pod("a-retry", 1, "2026-01-01T00:00:03Z", "2026-01-01T00:00:03Z", 0, "Succeeded"),
        pod("b-first", 1, "2026-01-01T00:00:03Z", "2026-01-01T00:00:03Z", 3, "Failed"),
        pod("c-other", 0, "2026-01-01T00:00:03Z", "2026-01-01T00:00:04Z", 0, "Succeeded"),
    ]
    spans = attempt_spans(pods, index_map=None, floor_ns=base, now_ns=base + 9 * S)
    assert [(s.attributes["kbatch.index"], s.attributes["kbatch.attempt"], s.attributes["kbatch.pod"])
            for s in spans] == [(0, 1, "c-other"), (1, 1, "b-first"), (1, 2, "a-retry")]  # fmt: skip
    first, retry = spans[1], spans[2]
    assert first.error == "exit code 3" and retry.error is None
    assert first.end_ns <= retry.start_ns


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    return exporter


class TI:
    def __init__(self) -> None:
        self.context_carrier = {"traceparent": PARENT}


def test_tracing_off_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "tracing_on", lambda: False)
    stage = StageTrace.begin({"ti": TI()})
    assert not stage.enabled and stage.to_dict() is None and stage.traceparent is None
    manifest = {"spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}}
    assert stage.manifest(manifest) is manifest
    stage.end("t")  # no provider touched


def test_stage_spans_survive_a_deferral_under_the_task_span(exporter: InMemorySpanExporter) -> None:
    first = StageTrace.begin({"ti": TI()})
    assert first.parent == PARENT
    with first.step("validate"):
        pass
    first.start("submit")
    manifest = first.manifest({"spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}})
    first.stop("submit")
    pod_env = manifest["spec"]["template"]["spec"]["containers"][0]["env"]
    assert pod_env == [{"name": "TRACEPARENT", "value": first.traceparent}]
    with watch_span(first.traceparent, where="triggerer"):
        pass
    # the worker that resumes gets the trace through the deferral's kwargs (JSON)
    import json

    second = StageTrace.from_dict(json.loads(json.dumps(first.to_dict())))
    second.start("results")
    second.stop("results")
    job = {"metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"},
           "status": {"startTime": "2026-01-01T00:00:01Z", "completionTime": "2026-01-01T00:00:03Z"}}  # fmt: skip
    pods = [pod("p0", 0, "2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z", 0, "Succeeded")]
    second.end("load", job=job, pods=pods, attributes={"kbatch.job": "kb-j"})
    second.end("load", error="twice")  # once only
    spans = {s.name: s for s in exporter.get_finished_spans()}
    stage = spans["kbatch.stage load"]
    assert f"00-{stage.context.trace_id:032x}-{stage.context.span_id:016x}-01" == first.traceparent
    assert stage.parent is not None and stage.parent.span_id == 0x00F067AA0BA902B7
    assert stage.context.trace_id == int(TRACE, 16)
    assert stage.attributes["kbatch.job"] == "kb-j"
    for name in (
        "kbatch.validate",
        "kbatch.submit",
        "kbatch.watch",
        "kbatch.queue_wait",
        "kbatch.run",
        "kbatch.results",
    ):
        assert spans[name].parent.span_id == stage.context.span_id, name
    assert spans["kbatch.index 0"].parent.span_id == spans["kbatch.run"].context.span_id
    assert spans["kbatch.index 0"].attributes["kbatch.exit_code"] == 0
    assert stage.start_time == first.started_ns <= spans["kbatch.validate"].start_time
    assert spans["kbatch.watch"].attributes["where"] == "triggerer"
    assert len(exporter.get_finished_spans()) == 8


def test_a_failed_stage_span_carries_the_error(exporter: InMemorySpanExporter) -> None:
    stage = StageTrace.begin({"ti": TI()})
    stage.end("load", error=ValueError("completions: must be at least 1"))
    [span] = exporter.get_finished_spans()
    assert span.status.status_code.name == "ERROR"
    assert "completions" in (span.status.description or "")


def test_without_a_carrier_the_current_span_is_the_parent(exporter: InMemorySpanExporter) -> None:
    provider = trace.get_tracer_provider()
    with provider.get_tracer("airflow").start_as_current_span("worker.load") as worker:
        stage = StageTrace.begin({"ti": object()})
    assert parse_traceparent(stage.parent).span_id == worker.get_span_context().span_id  # type: ignore[union-attr]
