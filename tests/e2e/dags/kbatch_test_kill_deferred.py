"""Test DAG: a deferred task whose Job's pods sleep for ten minutes, each carrying the run's
``marker`` on its command line; the test marks the task failed while it is deferred, and the
trigger's ``on_kill`` must remove the Job, its pods and their processes."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_kbatch.operators.job import KbatchJobOperator

with DAG(
    dag_id="kbatch_test_kill_deferred",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"namespace": Param("default", type="string"), "marker": Param("none", type="string")},
    tags=["kbatch", "test"],
) as dag:
    KbatchJobOperator(
        task_id="sleepy",
        namespace="{{ params.namespace }}",
        image="ghcr.io/example/kbatch-worker:0.1.0",
        command=["python", "-c", "import time; time.sleep(600)", "{{ params.marker }}"],
        completions=2,
        parallelism=2,
        deferrable=True,
        progress_interval=5,
    )
