"""Test DAG: an invalid stage (per-index retries on a NonIndexed Job, a success ratio above 1,
``end_in_triggerer`` not a bool).
The task must fail before anything is sent to the cluster, naming both fields."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_kbatch.operators.job import KbatchJobOperator

with DAG(
    dag_id="kbatch_test_invalid",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"namespace": Param("default", type="string")},
    tags=["kbatch", "test"],
) as dag:
    KbatchJobOperator(
        task_id="invalid",
        namespace="{{ params.namespace }}",
        image="ghcr.io/example/kbatch-worker:0.1.0",
        command=["python", "-m", "airflow_provider_kbatch.examples.square"],
        completions=4,
        completion_mode="NonIndexed",
        backoff_limit_per_index=1,
        min_success_ratio=1.5,
        end_in_triggerer="yes",
        retries=1,
        retry_delay=timedelta(seconds=1),
    )
