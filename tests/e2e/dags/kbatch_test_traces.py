"""Test DAG: a traced 3-index stage. Index 1 exits 3 on its first pod (``backoff_limit_per_index=1``
retries it in the Job: two attempts), index 0 adds a span of its own to the task's trace with
``runtime.trace_context()`` and OpenTelemetry (exported to ``params.otlp``), and every pod
returns the ``TRACEPARENT`` it saw."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_kbatch.operators.job import KbatchJobOperator

STAGE = """\
import os, sys
from airflow_provider_kbatch import runtime
i = runtime.index()
tried = os.path.join(os.environ["SCRATCH"], f"tried-{i}")
if i == 1 and not os.path.exists(tried):
    open(tried, "w").close()
    sys.exit(3)
if i == 0 and os.environ["OTLP"]:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    provider = TracerProvider(resource=Resource({"service.name": "stage-program"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=os.environ["OTLP"])))
    parent = TraceContextTextMapPropagator().extract(runtime.trace_context())
    with provider.get_tracer("stage-program").start_as_current_span("stage-program.work", context=parent):
        pass
    provider.shutdown()
runtime.emit_result({"index": i, "traceparent": runtime.traceparent()})
"""

with DAG(
    dag_id="kbatch_test_traces",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "namespace": Param("default", type="string"),
        "scratch": Param("/tmp", type="string"),
        "otlp": Param("", type="string"),
    },
    tags=["kbatch", "test"],
) as dag:
    KbatchJobOperator(
        task_id="traced",
        namespace="{{ params.namespace }}",
        image="ghcr.io/example/kbatch-worker:0.1.0",
        command=["python", "-c", STAGE],
        env={"SCRATCH": "{{ params.scratch }}", "OTLP": "{{ params.otlp }}"},
        completions=3,
        parallelism=3,
        backoff_limit_per_index=1,
        deferrable=True,
        # resumed in a worker: Airflow 3.3.2 emits the task's `task_run` span from the worker that
        # ends the task, so a stage that ends in the triggerer has no `task_run` span above it
        # (only `worker.traced` and `trigger.traced`); this test pins the full tree of that path
        end_in_triggerer=False,
        progress_interval=5,
    )
