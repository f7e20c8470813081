"""A daily two-stage DAG made for backfills: an indexed ``extract`` (3 indexes) and a ``report``
that sums the squares ``extract`` returned.

Every run gets its own Jobs and its own ledger ConfigMap, because Job and ledger names are pure
functions of (dag, task, run id, map index): backfilling many dates at once collides on nothing.

Backfill a week into namespace ``batch`` (the DAG must be unpaused for the scheduler to run it)::

    airflow dags unpause kbatch_example_daily
    airflow backfill create --dag-id kbatch_example_daily \\
        --from-date 2026-01-01 --to-date 2026-01-07 --max-active-runs 3 \\
        --dag-run-conf '{"namespace": "batch"}'

``--dag-run-conf`` overrides the ``namespace`` param for every run of the backfill; without it the
runs use the param's default. ``tests/e2e/test_backfill.py`` runs exactly this against a real
scheduler and triggerer.
"""

from __future__ import annotations

import datetime

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_kbatch.operators.job import KbatchJobOperator

IMAGE = "ghcr.io/example/kbatch-worker:0.1.0"

# The report stage: stdlib + the kbatch runtime helper, nothing else.
REPORT = """\
import json, os
from airflow_provider_kbatch import runtime
results = json.loads(os.environ["EXTRACT_RESULTS"])
runtime.emit_result({
    "ds": os.environ["DS"],
    "run_id": runtime.run_id(),
    "indexes": sorted(int(i) for i in results),
    "sum_of_squares": sum(r["square"] for r in results.values()),
})
"""

with DAG(
    dag_id="kbatch_example_daily",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=3,
    params={"namespace": Param("default", type="string", description="namespace of the Jobs and the ledger")},
    tags=["kbatch", "example"],
    # One Airflow retry, for Airflow rather than for the pods (their retries stay in Kubernetes):
    # on Airflow 3.3 a deferred task whose trigger fires within seconds can be failed by the
    # scheduler's late "success" event of the worker that deferred (apache/airflow#72716).
    default_args={"retries": 1, "retry_delay": datetime.timedelta(seconds=5)},
) as dag:
    extract = KbatchJobOperator(
        task_id="extract",
        namespace="{{ params.namespace }}",
        image=IMAGE,
        command=["python", "-m", "airflow_provider_kbatch.examples.square"],
        env={"DS": "{{ ds }}"},
        completions=3,
        parallelism=3,
        backoff_limit_per_index=1,
        resources={"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        progress_interval=5,
    )
    report = KbatchJobOperator(
        task_id="report",
        namespace="{{ params.namespace }}",
        image=IMAGE,
        command=["python", "-c", REPORT],
        env={
            "DS": "{{ ds }}",
            "EXTRACT_RESULTS": "{{ ti.xcom_pull(task_ids='extract')['results'] | tojson }}",
        },
        completions=1,
        backoff_limit=1,
        resources={"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        progress_interval=5,
    )
    extract >> report
