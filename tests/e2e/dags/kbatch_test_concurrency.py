"""Test DAGs: concurrency across runs (``concurrency_policy=``) and the argument checks of issue 11.

* ``kbatch_test_concurrency`` is backfilled over five dates at once (``max_active_runs=5``); its
  stage ``forbid`` (``concurrency_policy="Forbid"``, 1 s) makes the runs take turns, each waiting
  deferred while another run's Job of the stage is active: no two Jobs overlap.
* ``kbatch_test_concurrency_replace``: stage ``replace`` (``concurrency_policy="Replace"``, sleeping
  ``params.sleep`` seconds). A newer run deletes the older run's Job (recorded in the older run's
  ledger, whose task fails without retries) and succeeds.
* ``kbatch_test_concurrency_invalid``: a bad ``disruption_budget`` and a bad ``concurrency_policy``
  fail the task on its first try (``retries=1`` must not apply), naming both fields.
"""

from __future__ import annotations

import datetime

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_kbatch.operators.job import KbatchJobOperator

IMAGE = "ghcr.io/example/kbatch-worker:0.1.0"

with DAG(
    dag_id="kbatch_test_concurrency",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    end_date=pendulum.datetime(2026, 1, 5, tz="UTC"),  # no scheduled runs: the backfill only
    catchup=False,
    max_active_runs=5,
    params={"namespace": Param("default", type="string")},
    default_args={"retries": 1, "retry_delay": datetime.timedelta(seconds=1)},
    tags=["kbatch", "test"],
) as dag:
    KbatchJobOperator(
        task_id="forbid",
        namespace="{{ params.namespace }}",
        image=IMAGE,
        command=["python", "-c", "import time; time.sleep(1)"],
        concurrency_policy="Forbid",
        concurrency_timeout=datetime.timedelta(minutes=10),
        deferrable=True,
        stream_logs=False,
    )

with DAG(
    dag_id="kbatch_test_concurrency_replace",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=2,
    params={"namespace": Param("default", type="string"), "sleep": Param(1, type="integer")},
    default_args={"retries": 1, "retry_delay": datetime.timedelta(seconds=1)},
    tags=["kbatch", "test"],
) as replace_dag:
    KbatchJobOperator(
        task_id="replace",
        namespace="{{ params.namespace }}",
        image=IMAGE,
        command=["python", "-c", "import sys, time; time.sleep(int(sys.argv[1]))", "{{ params.sleep }}"],
        concurrency_policy="Replace",
        deferrable=True,
        stream_logs=False,
    )

with DAG(
    dag_id="kbatch_test_concurrency_invalid",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"namespace": Param("default", type="string")},
    tags=["kbatch", "test"],
) as invalid_dag:
    KbatchJobOperator(
        task_id="invalid",
        namespace="{{ params.namespace }}",
        image=IMAGE,
        command=["python", "-c", "print('never runs')"],
        disruption_budget={"min_available": 1, "max_unavailable": "{{ 'half' }}"},
        concurrency_policy="Sometimes",  # type: ignore[arg-type]
        retries=1,
        retry_delay=datetime.timedelta(seconds=1),
    )
