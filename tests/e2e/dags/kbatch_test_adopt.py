"""Test DAG: a Job waited for in the worker (``deferrable=False``) whose pods run until the test
creates a gate file, so a killed worker process leaves a running Job behind for the next execute
of the same task instance to adopt, however slow the machine is."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_kbatch.operators.job import KbatchJobOperator

# every index waits for the gate file (at most 10 minutes), then reports whether it saw it
GATED = """\
import os, sys, time
from airflow_provider_kbatch import runtime
gate, deadline = os.environ["GATE"], time.monotonic() + 600
while not os.path.exists(gate) and time.monotonic() < deadline:
    time.sleep(0.2)
runtime.emit_result({"index": runtime.index(), "gate": os.path.exists(gate)})
sys.exit(0 if os.path.exists(gate) else 1)
"""

with DAG(
    dag_id="kbatch_test_adopt",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "namespace": Param("default", type="string"),
        "gate": Param("/nonexistent", type="string", description="file whose existence ends the pods"),
    },
    tags=["kbatch", "test"],
) as dag:
    KbatchJobOperator(
        task_id="slow",
        namespace="{{ params.namespace }}",
        image="ghcr.io/example/kbatch-worker:0.1.0",
        command=["python", "-c", GATED],
        env={"GATE": "{{ params.gate }}"},
        completions=2,
        parallelism=2,
        deferrable=False,
        progress_interval=5,
    )
