"""Test DAG: a deferrable KbatchOutputSensor waiting for an output of another DAG's run.

The producing DAG, run id and output come from the run's conf; the test writes that run's ledger
while the sensor is deferred.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_kbatch.sensors.output import KbatchOutputSensor

with DAG(
    dag_id="kbatch_test_output_sensor",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "namespace": Param("default", type="string"),
        "producer": Param("kbatch_test_producer", type="string"),
        "producer_run_id": Param("", type="string"),
        "output_name": Param("raw", type="string"),
    },
    tags=["kbatch", "test"],
) as dag:
    KbatchOutputSensor(
        task_id="wait",
        external_dag_id="{{ params.producer }}",
        run_id="{{ params.producer_run_id }}",
        output_name="{{ params.output_name }}",
        namespace="{{ params.namespace }}",
        deferrable=True,
        timeout=240,
    )
