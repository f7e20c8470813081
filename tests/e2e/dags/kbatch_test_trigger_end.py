"""Test DAG: three 2-index stages that run side by side and differ only in how the task ends
once their Job succeeds (README "Ending the task in the triggerer"):

* ``ended``: the trigger finishes the stage and ends the task itself (``TaskSuccessEvent``);
* ``resumed``: ``end_in_triggerer=False``, a worker resumes the task for ``execute_complete``;
* ``published``: has an outlet Asset, so it resumes in a worker, which emits the Asset event.

Every pod sleeps ``params.seconds`` (longer than ``[kbatch] trigger_event_hold_seconds``, so the
event is not held) and returns its exit time (``time.time()`` just before it exits), from which
the test measures the latency from the last container's exit to the task instance's end."""

from __future__ import annotations

import datetime

import pendulum
from airflow.sdk import DAG, Asset, Param

from airflow_provider_kbatch.operators.job import KbatchJobOperator

SCRIPT = (
    "import sys, time; from airflow_provider_kbatch import runtime; i = runtime.index(); "
    "time.sleep(float(sys.argv[1])); print('trigger-end index', i, sys.argv[2], flush=True); "
    "runtime.emit_result({'index': i, 'exited': time.time()})"
)
PUBLISHED = Asset("kbatch-test://trigger-end/published")

with DAG(
    dag_id="kbatch_test_trigger_end",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "namespace": Param("default", type="string"),
        "marker": Param("none", type="string"),
        "seconds": Param(7.0, type="number"),
    },
    tags=["kbatch", "test"],
) as dag:
    for task_id, extra in (
        ("ended", {}),
        ("resumed", {"end_in_triggerer": False}),
        ("published", {"outlets": [PUBLISHED]}),
    ):
        KbatchJobOperator(
            task_id=task_id,
            namespace="{{ params.namespace }}",
            image="ghcr.io/example/kbatch-worker:0.1.0",
            command=["python", "-c", SCRIPT, "{{ params.seconds }}", "{{ params.marker }}"],
            completions=2,
            parallelism=2,
            deferrable=True,
            progress_interval=5,
            # a worker whose start times out in a loaded api-server fails the try before the stage
            # runs; the retry runs it (the test checks one attempt ran the Job, and succeeded)
            retries=3,
            retry_delay=datetime.timedelta(seconds=2),
            **extra,
        )
