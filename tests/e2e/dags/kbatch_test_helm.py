"""Test DAG for the Helm chart (tests/e2e/test_helm_chart.py): one stage that uses what the chart
installs, the way a DAG author would after ``helm install``.

* the ``kbatch_helm`` connection holds only a token of the chart's ``kbatch-airflow``
  ServiceAccount and the chart's namespace (its ``namespace`` extra: no ``namespace=`` here);
* the pods run as the chart's ``kbatch-stage`` ServiceAccount with the ``kbatch-critical``
  PriorityClass, under the namespace's ``restricted`` Pod Security (kbatch's default pods) and
  the LimitRange's default resources (the stage states none);
* the output goes to a per-run workspace claim of the chart's ``kbatch-workspace`` StorageClass.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_kbatch.operators.job import KbatchJobOperator
from airflow_provider_kbatch.spec.stage import PodOptions
from airflow_provider_kbatch.workspace import Workspace

with DAG(
    dag_id="kbatch_test_helm",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["kbatch", "test"],
):
    KbatchJobOperator(
        task_id="ingest",
        conn_id="kbatch_helm",
        image="ghcr.io/example/kbatch-worker:0.1.0",
        command=["python", "-m", "airflow_provider_kbatch.examples.ingest"],
        env={"ORDERS_PER_INDEX": "5"},
        completions=2,
        priority_class_name="kbatch-critical",
        pod=PodOptions(service_account_name="kbatch-stage"),
        workspace=Workspace(create=True, storage_class="kbatch-workspace", size="64Mi", retention="retain"),
        output="raw_orders",
        progress_interval=2,
    )
