"""Test DAGs for the operator's arguments (tests/e2e/test_operator_arguments.py).

* ``kbatch_test_templated_completions``: ``completions="{{ params.n }}"`` -- rendered to a string
  by Airflow (no ``render_template_as_native_obj``), run as an Indexed Job of ``n`` indexes;
* ``kbatch_test_connection_namespace``: no ``namespace``: the Job, ledger and trigger use the
  ``namespace`` extra of the (templated) connection;
* ``kbatch_test_invalid_arguments``: three tasks, each with a mistake the operator used to let
  through (a string command, an invalid namespace after templating, a malformed job_template);
  each must fail on its first try, naming the field, with nothing sent to the cluster;
* ``kbatch_test_inlets``: a producer and a consumer in a fixed namespace (only parsed: the
  consumer's input is an inlet of the producer's Asset).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_kbatch.operators.job import KbatchJobOperator
from airflow_provider_kbatch.workspace import Workspace

IMAGE = "ghcr.io/example/kbatch-worker:0.1.0"
SQUARE = ["python", "-m", "airflow_provider_kbatch.examples.square"]
START = pendulum.datetime(2026, 1, 1, tz="UTC")

with DAG(
    dag_id="kbatch_test_templated_completions",
    schedule=None,
    start_date=START,
    catchup=False,
    params={"namespace": Param("default", type="string"), "n": Param(3, type="integer")},
    tags=["kbatch", "test"],
):
    KbatchJobOperator(
        task_id="fan_out",
        namespace="{{ params.namespace }}",
        image=IMAGE,
        command=SQUARE,
        completions="{{ params.n }}",
        parallelism="{{ params.n }}",
        progress_interval=2,
    )

with DAG(
    dag_id="kbatch_test_connection_namespace",
    schedule=None,
    start_date=START,
    catchup=False,
    params={"conn_id": Param("kubernetes_default", type="string")},
    tags=["kbatch", "test"],
):
    KbatchJobOperator(
        task_id="in_connection_namespace",
        conn_id="{{ params.conn_id }}",
        image=IMAGE,
        command=SQUARE,
        completions=2,
        progress_interval=2,
    )

with DAG(
    dag_id="kbatch_test_invalid_arguments",
    schedule=None,
    start_date=START,
    catchup=False,
    params={
        "namespace": Param("default", type="string"),
        "bad_namespace": Param("Bad_Namespace", type="string"),
    },
    default_args={"retries": 1, "retry_delay": timedelta(seconds=1)},
    tags=["kbatch", "test"],
):
    KbatchJobOperator(
        task_id="string_command",
        namespace="{{ params.namespace }}",
        image=IMAGE,
        command="echo hello",
    )
    KbatchJobOperator(
        task_id="bad_namespace",
        namespace="{{ params.bad_namespace }}",
        image=IMAGE,
        command=SQUARE,
    )
    KbatchJobOperator(
        task_id="bad_template",
        namespace="{{ params.namespace }}",
        image=IMAGE,
        command=SQUARE,
        job_template={"spec": {"template": "x"}},
    )

with DAG(
    dag_id="kbatch_test_inlets",
    schedule=None,
    start_date=START,
    catchup=False,
    tags=["kbatch", "test"],
):
    workspace = Workspace(create=True, size="64Mi")
    produce = KbatchJobOperator(
        task_id="produce", namespace="kbatch-inlets", image=IMAGE, command=SQUARE, workspace=workspace,
        output="numbers",
    )  # fmt: skip
    consume = KbatchJobOperator(
        task_id="consume", namespace="kbatch-inlets", image=IMAGE, command=SQUARE, workspace=workspace,
        inputs=["numbers"],
    )  # fmt: skip
    produce >> consume
