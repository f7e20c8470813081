"""Memoized stages: run twice, the second run reuses ``produce``'s output (no Job) and
``consume`` reads it; ``salted`` has an argument that changes between the runs: a miss. ``bad_options`` fails
before anything is sent (a wrong ``cache_version`` and ``on_failure``).

The workspace is a shared claim (``kbatch-cache-claim``, created by the test), so the first
run's output is reachable from the second run.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_kbatch.operators.job import KbatchJobOperator
from airflow_provider_kbatch.workspace import Workspace

PRODUCE = """
import sys
from airflow_provider_kbatch import runtime
n = int(sys.argv[1])
with runtime.OutputWriter() as out:
    out.write_jsonl("numbers.jsonl", [{"n": k} for k in range(n)])
"""

CONSUME = """
from airflow_provider_kbatch import runtime
m = runtime.verify_input("numbers")
runtime.emit_result({"run_id": m["run_id"], "records": m["records"]})
"""

ws = Workspace(claim_name="kbatch-cache-claim")
common = {
    "namespace": "{{ params.namespace }}",
    "image": "ghcr.io/example/kbatch-worker:0.1.0",
    "progress_interval": 5,
}

with DAG(
    dag_id="kbatch_test_cache",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "namespace": Param("default", type="string"),
        "value": Param(3, type="integer"),
        "salt": Param("a", type="string"),
    },
    tags=["kbatch", "test"],
) as dag:
    produce = KbatchJobOperator(
        task_id="produce",
        command=["python", "-c", PRODUCE],
        args=["{{ params.value }}"],
        workspace=ws,
        output="numbers",
        cache=True,
        cache_version="1",
        **common,
    )
    consume = KbatchJobOperator(
        task_id="consume", command=["python", "-c", CONSUME], workspace=ws, inputs=["numbers"], **common
    )
    salted = KbatchJobOperator(
        task_id="salted", command=["python", "-c", "pass"], args=["{{ params.salt }}"], cache=True, **common
    )
    # bad compensation/cache options: the task fails before anything is sent, naming each field
    KbatchJobOperator(
        task_id="bad_options",
        command=["python", "-c", "pass"],
        cache=True,
        cache_version=7,  # type: ignore[arg-type]
        on_failure={"cmd": ["true"]},
        retries=1,
        **common,
    )
    produce >> consume
