"""Test DAG: a 3-index stage whose pods print one line each and exit in well under a second --
finished before the trigger's pod watch starts in a real triggerer. With ``fail_index`` >= 0
that index exits 3 on the first try (``backoff_limit_per_index=0``: the Job fails), and the
Airflow retry resumes only that index."""

from __future__ import annotations

import datetime

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_kbatch.operators.job import KbatchJobOperator

SCRIPT = (
    "import os, sys; i, t = os.environ['KBATCH_INDEX'], os.environ['KBATCH_TRY_NUMBER']; "
    "print('short stage index', i, 'try', t, sys.argv[1], flush=True); "
    "sys.exit(3 if i == sys.argv[2] and t == '1' else 0)"
)

with DAG(
    dag_id="kbatch_test_short_logs",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "namespace": Param("default", type="string"),
        "marker": Param("none", type="string"),
        "fail_index": Param(-1, type="integer"),
    },
    tags=["kbatch", "test"],
) as dag:
    KbatchJobOperator(
        task_id="short",
        namespace="{{ params.namespace }}",
        image="ghcr.io/example/kbatch-worker:0.1.0",
        command=["python", "-c", SCRIPT, "{{ params.marker }}", "{{ params.fail_index }}"],
        completions=3,
        parallelism=3,
        backoff_limit_per_index=0,
        deferrable=True,
        progress_interval=5,
        retries=1,
        retry_delay=datetime.timedelta(seconds=1),
    )
