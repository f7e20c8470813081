"""A daily two-stage DAG made for backfills: an indexed ``extract`` (3 indexes) writes the day's
rows to a shared claim, and ``report`` reads them back through the claim and sums them.

Every run gets its own Jobs, its own ledger ConfigMap and its own directory on the claim
(``runs/<run key>/outputs/squares``), because all three names are pure functions of the DAG and
the run id: backfilling many dates at once, on one volume, collides on nothing. ``report`` fails
if it ever reads a row of another date.

The claim is an existing one (``kbatch-daily`` in the run's namespace; runs never delete it).
Create it once, then backfill a week into namespace ``batch`` (the DAG must be unpaused for the
scheduler to run its backfill)::

    kubectl -n batch apply -f - <<EOF
    {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "kbatch-daily"},
     "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}}
    EOF
    airflow backfill create --dag-id kbatch_example_daily \\
        --from-date 2026-01-01 --to-date 2026-01-07 --max-active-runs 3 \\
        --dag-run-conf '{"namespace": "batch"}'
    airflow dags unpause kbatch_example_daily

``--dag-run-conf`` overrides the ``namespace`` param for every run of the backfill; without it the
runs use the param's default. ``tests/e2e/test_backfill.py`` runs exactly this against a real
scheduler and triggerer.
"""

from __future__ import annotations

import datetime

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_kbatch.operators.job import KbatchJobOperator
from airflow_provider_kbatch.workspace import Workspace

IMAGE = "ghcr.io/example/kbatch-worker:0.1.0"
CLAIM = "kbatch-daily"
RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
EXIT_FOREIGN_ROWS = 3

# The stage programs: the standard library and the kbatch runtime helper, nothing else.
EXTRACT = """\
import os
from airflow_provider_kbatch import runtime
i, ds = runtime.index(), os.environ["DS"]
with runtime.OutputWriter() as out:
    out.write_jsonl(f"squares-{i:05d}.jsonl", [{"ds": ds, "index": i, "square": i * i}])
runtime.emit_result({"ds": ds, "index": i, "square": i * i})
"""
REPORT = """\
import json, os, sys
from airflow_provider_kbatch import runtime
ds = os.environ["DS"]
manifest = runtime.verify_input("squares")
base = runtime.input_dir("squares")
rows = [json.loads(line) for f in manifest["files"] for line in (base / f["path"]).read_text().splitlines()]
foreign = sorted({r["ds"] for r in rows} - {ds})
if foreign:
    runtime.log("rows of other dates in this run's input", ds=ds, foreign=foreign)
    sys.exit(int(os.environ["EXIT_FOREIGN_ROWS"]))
runtime.emit_result({
    "ds": ds,
    "run_id": runtime.run_id(),
    "input_run_id": manifest["run_id"],
    "indexes": sorted(r["index"] for r in rows),
    "sum_of_squares": sum(r["square"] for r in rows),
})
"""

with DAG(
    dag_id="kbatch_example_daily",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=3,
    params={
        "namespace": Param("default", type="string", description="namespace of the Jobs, claim and ledger")
    },
    tags=["kbatch", "example"],
    # One Airflow retry, for Airflow rather than for the pods (their retries stay in Kubernetes):
    # on Airflow 3.3 a deferred task whose trigger fires within seconds can be failed by the
    # scheduler's late "success" event of the worker that deferred (apache/airflow#72716).
    default_args={"retries": 1, "retry_delay": datetime.timedelta(seconds=5)},
) as dag:
    common = {
        "namespace": "{{ params.namespace }}",
        "image": IMAGE,
        "workspace": Workspace(claim_name=CLAIM),
        "resources": RESOURCES,
        "progress_interval": 5,
    }
    extract = KbatchJobOperator(
        task_id="extract",
        command=["python", "-c", EXTRACT],
        env={"DS": "{{ ds }}"},
        completions=3,
        parallelism=3,
        backoff_limit_per_index=1,
        output="squares",
        **common,
    )
    report = KbatchJobOperator(
        task_id="report",
        command=["python", "-c", REPORT],
        env={"DS": "{{ ds }}", "EXIT_FOREIGN_ROWS": str(EXIT_FOREIGN_ROWS)},
        completions=1,
        backoff_limit=1,
        fail_on_exit_codes=[EXIT_FOREIGN_ROWS],
        inputs=["squares"],
        **common,
    )
    extract >> report
