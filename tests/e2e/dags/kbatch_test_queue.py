"""Test DAG: Kueue-style queueing. Both Jobs are created suspended with the
``kueue.x-k8s.io/queue-name`` label; the test plays Kueue and admits ``admitted`` only (after a
couple of seconds), so ``times_out`` (``queue_timeout=3``) is never admitted and must fail."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_kbatch.operators.job import KbatchJobOperator

with DAG(
    dag_id="kbatch_test_queue",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"namespace": Param("default", type="string")},
    tags=["kbatch", "test"],
) as dag:
    common = dict(
        namespace="{{ params.namespace }}",
        image="ghcr.io/example/kbatch-worker:0.1.0",
        command=["python", "-m", "airflow_provider_kbatch.examples.square"],
        completions=2,
        queue_name="team-a",
        progress_interval=2,
    )
    admitted = KbatchJobOperator(task_id="admitted", **common)
    times_out = KbatchJobOperator(task_id="times_out", queue_timeout=3, **common)
    admitted >> times_out
