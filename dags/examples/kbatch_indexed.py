"""An Indexed Job as one Airflow task: 8 indexes, 4 at a time, per-index retries in Kubernetes,
a non-retryable exit code, and per-index results gathered in XCom.

Run it on the local cluster with ``make demo``.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_kbatch.operators.job import KbatchJobOperator

with DAG(
    dag_id="kbatch_example_indexed",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "namespace": Param("default", type="string"),
        "fail_indexes": Param("", type="string", description="indexes that fail on the first try"),
        "fail_exit_code": Param(3, type="integer", description="42 is non-retryable (FailJob)"),
    },
    tags=["kbatch", "example"],
) as dag:
    squares = KbatchJobOperator(
        task_id="squares",
        namespace="{{ params.namespace }}",
        image="ghcr.io/example/kbatch-worker:0.1.0",
        command=["python", "-m", "airflow_provider_kbatch.examples.square"],
        env={"FAIL_INDEXES": "{{ params.fail_indexes }}", "FAIL_EXIT_CODE": "{{ params.fail_exit_code }}"},
        completions=8,
        parallelism=4,
        backoff_limit_per_index=1,
        max_failed_indexes=2,
        fail_on_exit_codes=[42],
        resources={"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        progress_interval=5,
        retries=1,
        retry_delay=timedelta(seconds=2),
    )
