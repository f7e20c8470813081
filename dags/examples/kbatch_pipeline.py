"""A three-stage ETL whose stages hand data to each other through a per-run workspace (PVC).

``ingest`` (Indexed, 8 indexes) writes JSONL orders under the ``orders`` contract; ``transform``
(2 indexes) reads them read-only from the workspace, verified against the manifest and the
contract it accepts, and writes ``clean_orders``; ``publish`` (1 index) aggregates them into a
report and returns the totals (XCom). Before each consumer's Job is submitted, the operator checks
in the run ledger that its input was produced in this run, under a compatible contract, on the
claim it mounts. ``cleanup`` deletes the run's claim once every stage succeeded.

Every output is an Airflow Asset (``kbatch://<namespace>/kbatch_example_pipeline/<output>``,
through an AssetAlias here because the namespace is a param), and the ledger ConfigMap of the run
(``kubectl get cm -l kbatch.io/ledger=true``) shows each stage's transitions, attempts, indexes
and output digest.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_kbatch.operators.job import KbatchJobOperator
from airflow_provider_kbatch.operators.workspace import KbatchWorkspaceCleanupOperator
from airflow_provider_kbatch.pipeline.contracts import Contract
from airflow_provider_kbatch.workspace import Workspace

IMAGE = "ghcr.io/example/kbatch-worker:0.1.0"
NAMESPACE = "{{ params.namespace }}"
RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}

ORDERS_V1 = Contract(
    "orders", "1.0", {"order_id": "int", "customer": "str", "amount_cents": "int", "category": "str"}
)
CLEAN_V1 = Contract(
    "clean_orders", "1.0", {"order_id": "int", "category": "str", "amount_cents": "int", "net_cents": "int"}
)
REPORT_V1 = Contract("order_report", "1.0", {"category": "str", "orders": "int", "net_cents": "int"})

WORKSPACE = Workspace(create=True, size="256Mi", retention="delete_on_success")


def _module(name: str) -> list[str]:
    return ["python", "-m", f"airflow_provider_kbatch.examples.{name}"]


with DAG(
    dag_id="kbatch_example_pipeline",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "namespace": Param("default", type="string", description="namespace of the Jobs, claim and ledger")
    },
    tags=["kbatch", "example", "pipeline"],
) as dag:
    common = {
        "namespace": NAMESPACE,
        "image": IMAGE,
        "workspace": WORKSPACE,
        "resources": RESOURCES,
        "progress_interval": 5,
    }
    ingest = KbatchJobOperator(
        task_id="ingest",
        command=_module("ingest"),
        completions=8,
        parallelism=4,
        backoff_limit_per_index=1,
        output="raw_orders",
        produces=ORDERS_V1,
        **common,
    )
    transform = KbatchJobOperator(
        task_id="transform",
        command=_module("transform"),
        completions=2,
        backoff_limit_per_index=1,
        inputs=["raw_orders"],
        # a consumer states the fields it needs; the producer may have more
        accepts={
            "raw_orders": Contract(
                "orders", "1.0", {"order_id": "int", "amount_cents": "int", "category": "str"}
            )
        },
        output="clean_orders",
        produces=CLEAN_V1,
        **common,
    )
    publish = KbatchJobOperator(
        task_id="publish",
        command=_module("publish"),
        completions=1,
        backoff_limit=1,
        inputs={"clean_orders": "transform"},
        accepts={"clean_orders": CLEAN_V1},
        output="report",
        produces=REPORT_V1,
        **common,
    )
    cleanup = KbatchWorkspaceCleanupOperator(task_id="cleanup", workspace=WORKSPACE, namespace=NAMESPACE)
    ingest >> transform >> publish >> cleanup
