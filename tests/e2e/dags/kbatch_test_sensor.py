"""Test DAGs: KbatchJobSensor in each mode, waiting for a Job the test creates.

``kbatch_test_sensor_<mode>`` waits by ``job_name``; ``kbatch_test_sensor_selector_<mode>`` by
``label_selector`` (both from the run's conf). Short poke interval; one Airflow retry, so a test
can tell a retryable Job failure (try 2) from a FailJob one (no retry).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_kbatch.sensors.job import KbatchJobSensor

MODES = {
    "poke": {"mode": "poke"},
    "reschedule": {"mode": "reschedule"},
    "deferrable": {"deferrable": True},
}

for by in ("name", "selector"):
    for mode, mode_kwargs in MODES.items():
        dag_id = f"kbatch_test_sensor_{mode}" if by == "name" else f"kbatch_test_sensor_selector_{mode}"
        target = (
            {"job_name": "{{ params.job_name }}"}
            if by == "name"
            else {"label_selector": "{{ params.label_selector }}"}
        )
        with DAG(
            dag_id=dag_id,
            schedule=None,
            start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
            catchup=False,
            params={
                "namespace": Param("default", type="string"),
                "job_name": Param("", type="string"),
                "label_selector": Param("", type="string"),
            },
            tags=["kbatch", "test"],
        ) as dag:
            KbatchJobSensor(
                task_id="wait",
                namespace="{{ params.namespace }}",
                poke_interval=1,
                timeout=240,
                retries=1,
                retry_delay=timedelta(seconds=1),
                **target,
                **mode_kwargs,
            )
        globals()[dag_id] = dag
