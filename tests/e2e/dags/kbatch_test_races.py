"""Test DAG: the races the official KubernetesJobOperator had, one task each.

* ``pod_retries``: parallel Indexed Job whose indexes 1 and 3 fail on their first pod (the Job
  controller retries them: ``backoff_limit_per_index``); only the controller makes pods
  (duplicate bare pods: #47780, #56596, #58496).
* ``unschedulable``: its pods match no node until the test labels one with
  ``kbatch-test/pool=<namespace>`` (pods not found yet failed the task: #70585).
* ``wide``: ``parallelism`` larger than ``completions`` (the wait hung: #64867).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_kbatch.operators.job import KbatchJobOperator
from airflow_provider_kbatch.spec.stage import EnvFromField

IMAGE = "ghcr.io/example/kbatch-worker:0.1.0"
# fails with exit code 3 on the first pod of indexes 1 and 3, succeeds on the retry
FLAKY = (
    "import os, sys; from airflow_provider_kbatch import runtime; i = runtime.index(); "
    "first = os.environ['INDEX_FAILURES'] in ('', '0'); "
    "sys.exit(3) if first and i in (1, 3) else runtime.emit_result({'index': i})"
)

with DAG(
    dag_id="kbatch_test_races",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"namespace": Param("default", type="string")},
    tags=["kbatch", "test"],
) as dag:
    pod_retries = KbatchJobOperator(
        task_id="pod_retries",
        namespace="{{ params.namespace }}",
        image=IMAGE,
        command=["python", "-c", FLAKY],
        env={
            "INDEX_FAILURES": EnvFromField(
                "metadata.annotations['batch.kubernetes.io/job-index-failure-count']"
            )
        },
        completions=4,
        parallelism=4,
        backoff_limit_per_index=2,
        progress_interval=2,
    )
    unschedulable = KbatchJobOperator(
        task_id="unschedulable",
        namespace="{{ params.namespace }}",
        image=IMAGE,
        command=["python", "-m", "airflow_provider_kbatch.examples.square"],
        completions=2,
        job_template={
            "spec": {"template": {"spec": {"nodeSelector": {"kbatch-test/pool": "{{ params.namespace }}"}}}}
        },
        progress_interval=2,
    )
    wide = KbatchJobOperator(
        task_id="wide",
        namespace="{{ params.namespace }}",
        image=IMAGE,
        command=["python", "-m", "airflow_provider_kbatch.examples.square"],
        completions=2,
        parallelism=5,
        progress_interval=2,
    )
    pod_retries >> unschedulable >> wide
