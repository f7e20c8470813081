"""Test DAG of the kbatch run view (tests/e2e/test_ui_view.py): a diamond pipeline on a workspace.

``extract`` writes output ``a``; ``left`` and ``right`` read it and write ``l`` and ``r``, ``right``
sleeping ``right_seconds`` first, so the critical path goes through it; ``join`` reads both; then
``report``, a task that is not a stage, follows ``join`` (an Airflow dependency, no data). Each
stage has one index running a few lines of Python (the runtime's writer records the output and
merges its manifest).
"""

from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Param

from airflow_provider_kbatch.operators.job import KbatchJobOperator
from airflow_provider_kbatch.workspace import Workspace

PROGRAM = (
    "import sys, time\n"
    "from airflow_provider_kbatch import runtime\n"
    "time.sleep(float(sys.argv[1]))\n"
    "with runtime.OutputWriter() as out:\n"
    "    out.write_jsonl('part.jsonl', [{'stage': runtime.stage()}])\n"
)
WORKSPACE = Workspace(create=True, size="16Mi", retention="delete_on_success")

with DAG(
    dag_id="kbatch_test_ui_pipeline",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"namespace": Param("default", type="string"), "right_seconds": Param(12, type="number")},
    tags=["kbatch", "test"],
) as dag:

    def stage(task_id: str, seconds: str, output: str, inputs: list[str] | None = None) -> KbatchJobOperator:
        return KbatchJobOperator(
            task_id=task_id,
            namespace="{{ params.namespace }}",
            image="python:3.12-slim",
            command=["python", "-c", PROGRAM, seconds],
            workspace=WORKSPACE,
            output=output,
            inputs=inputs,
            deferrable=False,  # waits in the worker: no trigger round trip, no second worker start
            retries=0,
        )

    extract = stage("extract", "0", "a")
    left = stage("left", "0", "l", ["a"])
    right = stage("right", "{{ params.right_seconds }}", "r", ["a"])
    join = stage("join", "0", "j", ["l", "r"])
    extract >> [left, right] >> join >> EmptyOperator(task_id="report")
