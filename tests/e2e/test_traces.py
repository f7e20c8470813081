"""The task's trace continues into the cluster, under the real deployment (api-server, scheduler,
triggerer on PostgreSQL, OpenTelemetry tracing on, exported over OTLP/HTTP to the session's
receiver ``tests/otlp.py``).

One run of a deferred 3-index stage (index 1 fails its first pod, index 0 adds a span of its own)
and the span tree the receiver got: Airflow's ``task_run`` span -> ``kbatch.stage`` -> validate,
submit, watch (in the triggerer), queue wait, run (-> one span per index attempt, with exit
codes), results, and the stage program's span; every pod saw the stage span's ``TRACEPARENT``.
"""

from __future__ import annotations

import logging
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ClusterHandle, wait_until
from tests.otlp import OtlpReceiver, Span

DAG_ID, TASK_ID = "kbatch_test_traces", "traced"
log = logging.getLogger(__name__)


def children(spans: list[Span], parent: Span) -> dict[str, list[Span]]:
    found: dict[str, list[Span]] = {}
    for span in spans:
        if span.parent_span_id == parent.span_id:
            found.setdefault(span.name, []).append(span)
    return found


@pytest.mark.timeout(900)
def test_the_task_trace_continues_into_the_job_and_its_pods(
    airflow_deployment: Any,
    otlp_receiver: OtlpReceiver,
    devcluster: ClusterHandle,
    namespace: str,
    tmp_path: Path,
    record_property: Any,
) -> None:
    deployment = airflow_deployment
    deployment.wait_dag(DAG_ID, timeout=180)
    deployment.unpause(DAG_ID)
    run_id = f"manual__traces-{secrets.token_hex(4)}"
    tmp_path.chmod(0o777)
    started = time.monotonic()
    deployment.trigger(
        DAG_ID,
        run_id,
        conf={"namespace": namespace, "scratch": str(tmp_path), "otlp": otlp_receiver.endpoint},
    )
    try:
        wait_until(
            lambda: any(r.finished for r in deployment.runs(DAG_ID) if r.run_id == run_id),
            timeout=600,
            interval=1,
            what="the traced run finished",
        )
    except AssertionError:
        raise AssertionError(deployment.report(DAG_ID)) from None
    assert deployment.task_instances(DAG_ID, run_id)[(TASK_ID, -1)] == ("success", 1), deployment.report(
        DAG_ID
    )

    def stage_and_task() -> tuple[Span, Span] | None:
        stage = [
            s
            for s in otlp_receiver.find(**{"kbatch.namespace": namespace})
            if s.name.startswith("kbatch.stage")
        ]
        task = [
            s
            for s in otlp_receiver.find(**{"airflow.dag_run.run_id": run_id})
            if s.name == f"task_run.{TASK_ID}"
        ]
        return (stage[0], task[0]) if stage and task else None

    stage, task = wait_until(stage_and_task, timeout=60, interval=0.5, what="the stage and task spans")
    record_property("traces_run_seconds", round(time.monotonic() - started, 1))

    # the stage span is a child of the task's span (Airflow's task_run span), in its trace
    assert stage.trace_id == task.trace_id
    assert stage.parent_span_id == task.span_id
    assert stage.name == f"kbatch.stage {TASK_ID}" and not stage.error
    assert stage.attributes["kbatch.job"].startswith("kb-")

    def tree() -> dict[str, list[Span]] | None:
        found = children(otlp_receiver.trace(stage.trace_id), stage)
        return found if {"kbatch.watch", "stage-program.work"} <= set(found) else None

    below = wait_until(tree, timeout=60, interval=0.5, what="the triggerer's and the pod's spans")
    trace = otlp_receiver.trace(stage.trace_id)
    assert set(below) == {
        "kbatch.validate",
        "kbatch.submit",
        "kbatch.watch",
        "kbatch.queue_wait",
        "kbatch.run",
        "kbatch.results",
        "stage-program.work",
    }, sorted(below)
    assert all(len(v) == 1 for v in below.values()), below
    assert below["kbatch.watch"][0].attributes["where"] == "triggerer"
    assert below["stage-program.work"][0].service == "stage-program"
    validate, submit, results = (below[n][0] for n in ("kbatch.validate", "kbatch.submit", "kbatch.results"))
    assert stage.start_ns <= validate.start_ns <= validate.end_ns <= submit.start_ns <= submit.end_ns
    assert submit.end_ns <= results.start_ns <= results.end_ns <= stage.end_ns
    run = below["kbatch.run"][0]
    assert below["kbatch.queue_wait"][0].end_ns <= run.start_ns

    # one span per index attempt under the run: index 1 twice (exit code 3, then 0)
    attempts = [s for s in trace if s.parent_span_id == run.span_id]
    by_index: dict[int, list[Span]] = {}
    for span in sorted(
        attempts, key=lambda s: (s.attributes["kbatch.index"], s.attributes["kbatch.attempt"])
    ):
        by_index.setdefault(span.attributes["kbatch.index"], []).append(span)
    assert sorted(by_index) == [0, 1, 2]
    assert [s.attributes["kbatch.exit_code"] for s in by_index[1]] == [3, 0]
    assert by_index[1][0].end_ns <= by_index[1][1].start_ns
    assert by_index[1][0].error and "exit code 3" in by_index[1][0].status_message
    assert [len(by_index[0]), len(by_index[2])] == [1, 1]
    assert all(s.attributes["kbatch.exit_code"] == 0 and not s.error for s in by_index[0] + by_index[2])
    assert all(run.start_ns <= s.start_ns <= s.end_ns <= run.end_ns for s in attempts)

    # every pod saw the stage span's context: TRACEPARENT, and the Job's annotation
    expected = f"00-{stage.trace_id}-{stage.span_id}-01"
    result = deployment.xcom(DAG_ID, run_id, TASK_ID)
    assert {r["traceparent"] for r in result["results"].values()} == {expected}
    manifest = deployment.xcom(DAG_ID, run_id, TASK_ID, key="job_manifest")
    assert manifest["metadata"]["annotations"]["kbatch.io/traceparent"] == expected
    log.warning(
        "measured: %d spans in the task's trace, stage span %.1fs",
        len(trace),
        (stage.end_ns - stage.start_ns) / 1e9,
    )
