"""A slow Indexed stage, for the test that restarts the API server while the task waits."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_kbatch.operators.job import KbatchJobOperator

for deferrable in (True, False):
    with DAG(
        dag_id=f"kbatch_test_resilience_{'deferred' if deferrable else 'sync'}",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        params={"namespace": Param("default", type="string"), "sleep": Param(8, type="integer")},
        tags=["kbatch", "test"],
    ):
        KbatchJobOperator(
            task_id="slow",
            namespace="{{ params.namespace }}",
            image="ghcr.io/example/kbatch-worker:0.1.0",
            command=["python", "-m", "airflow_provider_kbatch.examples.square"],
            env={"SLEEP_SECONDS": "{{ params.sleep }}"},
            completions=3,
            parallelism=3,
            deferrable=deferrable,
            progress_interval=2,
        )
