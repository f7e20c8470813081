"""A contract violation at a stage boundary: it fails fast, nothing is submitted, upstream is untouched.

``produce_orders`` publishes ``orders`` 1.0 whose ``amount_cents`` is a string (declared so, and
every row is validated against that). ``consume_orders`` accepts ``orders`` 1.0 with an integer
``amount_cents``. Before the consumer's Job is created the operator compares the contract the run
ledger recorded for the producer's output with the accepted one and fails the task, without an
Airflow retry, naming the stage, the field, what it expected and what it found. No consumer Job is
created and the producer's output and its manifest digest stay as they were.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_kbatch.operators.job import KbatchJobOperator
from airflow_provider_kbatch.pipeline.contracts import Contract
from airflow_provider_kbatch.workspace import Workspace

IMAGE = "ghcr.io/example/kbatch-worker:0.1.0"
WORKSPACE = Workspace(create=True, size="64Mi", retention="retain")
RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}

with DAG(
    dag_id="kbatch_example_contract_violation",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"namespace": Param("default", type="string")},
    tags=["kbatch", "example", "contracts"],
) as dag:
    produce = KbatchJobOperator(
        task_id="produce_orders",
        namespace="{{ params.namespace }}",
        image=IMAGE,
        command=["python", "-m", "airflow_provider_kbatch.examples.ingest"],
        env={"AMOUNT_AS": "str", "ORDERS_PER_INDEX": "10"},
        completions=2,
        workspace=WORKSPACE,
        output="orders",
        produces=Contract(
            "orders", "1.0", {"order_id": "int", "customer": "str", "amount_cents": "str", "category": "str"}
        ),
        resources=RESOURCES,
        progress_interval=5,
    )
    consume = KbatchJobOperator(
        task_id="consume_orders",
        namespace="{{ params.namespace }}",
        image=IMAGE,
        command=["python", "-m", "airflow_provider_kbatch.examples.transform"],
        env={"INPUT": "orders"},
        workspace=WORKSPACE,
        inputs=["orders"],
        accepts={"orders": Contract("orders", "1.0", {"order_id": "int", "amount_cents": "int"})},
        output="clean_orders",
        resources=RESOURCES,
        progress_interval=5,
        retries=2,  # not used: a contract violation fails the task without a retry
        retry_delay=timedelta(seconds=1),
    )
    produce >> consume
