"""Compensation: a stage that writes half its output and fails.

``half`` is an Indexed Job of 2: index 0 commits its output; on the first Airflow try index 1
writes a partial file and exits 3 before committing. The failed try's compensation Job moves the
partial file aside (index 0's part and file stay: the retry resumes) and runs ``on_failure``,
which reports its environment and what it found in the quarantine. The retry runs index 1 only
and the output is complete and clean.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_kbatch.operators.job import KbatchJobOperator, StageAction
from airflow_provider_kbatch.workspace import Workspace

STAGE = """
import sys
from airflow_provider_kbatch import runtime
i, t = runtime.index(), runtime.try_number()
with runtime.OutputWriter() as out:
    if i == 1 and t == 1:
        out.write_text("part-1.jsonl", '{"i": 1}\\n')  # half of it, never committed
        sys.exit(3)
    out.write_jsonl(f"part-{i}.jsonl", [{"i": i}, {"i": i}])
"""

ON_FAILURE = """
import os
from airflow_provider_kbatch import runtime
q = os.environ["KBATCH_QUARANTINE_PATH"]
files = sorted(os.path.relpath(os.path.join(r, f), q) for r, _, fs in os.walk(q) for f in fs)
runtime.emit_result({k: os.environ[k] for k in ("KBATCH_FAILED_INDEXES", "KBATCH_QUARANTINE_PATH",
                     "KBATCH_FINAL", "KBATCH_TRY_NUMBER", "UNDO")} | {"files": files})
"""

# the pods import this checkout's runtime (the process node runs them with the machine's python)
REPO = {"PYTHONPATH": str(Path(__file__).resolve().parents[3])}

with DAG(
    dag_id="kbatch_test_compensation",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"namespace": Param("default", type="string")},
    tags=["kbatch", "test"],
) as dag:
    KbatchJobOperator(
        task_id="half",
        namespace="{{ params.namespace }}",
        image="ghcr.io/example/kbatch-worker:0.1.0",
        command=["python", "-c", STAGE],
        env=REPO,
        completions=2,
        parallelism=2,
        backoff_limit_per_index=0,
        workspace=Workspace(create=True, size="64Mi", retention="retain"),
        output="halves",
        on_failure=StageAction(command=["python", "-c", ON_FAILURE], env={"UNDO": "external-table", **REPO}),
        retries=1,
        retry_delay=datetime.timedelta(seconds=1),
        progress_interval=5,
    )
