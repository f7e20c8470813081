"""Test DAGs: the lifecycle operators on Jobs the test creates.

``kbatch_test_lifecycle_suspend`` suspends ``job_name``; ``kbatch_test_lifecycle_resume`` resumes
it and waits for it to complete (deferrable sensor); ``kbatch_test_lifecycle_delete`` deletes every
Job matching ``label_selector`` (foreground propagation).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_kbatch.operators.job import (
    KbatchDeleteJobOperator,
    KbatchResumeJobOperator,
    KbatchSuspendJobOperator,
)
from airflow_provider_kbatch.sensors.job import KbatchJobSensor

PARAMS = {
    "namespace": Param("default", type="string"),
    "job_name": Param("", type="string"),
    "label_selector": Param("", type="string"),
}
START = pendulum.datetime(2026, 1, 1, tz="UTC")

with DAG(
    dag_id="kbatch_test_lifecycle_suspend",
    schedule=None,
    start_date=START,
    params=PARAMS,
    tags=["kbatch", "test"],
):
    KbatchSuspendJobOperator(
        task_id="suspend", namespace="{{ params.namespace }}", job_name="{{ params.job_name }}"
    )

with DAG(
    dag_id="kbatch_test_lifecycle_resume",
    schedule=None,
    start_date=START,
    params=PARAMS,
    tags=["kbatch", "test"],
):
    resume = KbatchResumeJobOperator(
        task_id="resume", namespace="{{ params.namespace }}", job_name="{{ params.job_name }}"
    )
    wait = KbatchJobSensor(
        task_id="wait",
        namespace="{{ params.namespace }}",
        job_name="{{ params.job_name }}",
        deferrable=True,
        poke_interval=1,
        timeout=180,
    )
    resume >> wait

with DAG(
    dag_id="kbatch_test_lifecycle_delete",
    schedule=None,
    start_date=START,
    params=PARAMS,
    tags=["kbatch", "test"],
):
    KbatchDeleteJobOperator(
        task_id="delete", namespace="{{ params.namespace }}", label_selector="{{ params.label_selector }}"
    )
