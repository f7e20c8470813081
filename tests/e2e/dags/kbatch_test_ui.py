"""Test DAG of the kbatch UI view (tests/e2e/test_ui_view.py): one big Indexed stage with retried
and failed indexes, a stage with a malformed ``links`` argument, and a task that is not a stage.

``stage``: ``completions`` indexes (``sh``, no Python start-up per pod). Indexes in ``flaky`` fail
their first pod (a marker file under ``marker_dir`` says "already tried") and succeed on the
retry; indexes in ``broken`` fail every pod, so after ``max_failed_indexes`` + 1 of them the Job
fails (``MaxFailedIndexesExceeded``) and the indexes never started are "not run".
"""

from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Param

from airflow_provider_kbatch.operators.job import KbatchJobOperator

SCRIPT = (
    'i="$KBATCH_INDEX"; echo "ui stage index $i marker $1"; '
    'case ",$2," in *",$i,"*) echo "index $i is broken" >&2; exit 3;; esac; '
    'case ",$3," in *",$i,"*) '
    '  if [ ! -e "$4/tried-$i" ]; then : > "$4/tried-$i"; echo "index $i: flaky first try" >&2; exit 4; fi;; '
    "esac; exit 0"
)

with DAG(
    dag_id="kbatch_test_ui",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "namespace": Param("default", type="string"),
        "marker": Param("none", type="string"),
        "marker_dir": Param("/tmp", type="string"),
        "completions": Param(300, type="integer"),
        "broken": Param("", type="string"),
        "flaky": Param("", type="string"),
    },
    tags=["kbatch", "test"],
) as dag:
    KbatchJobOperator(
        task_id="stage",
        namespace="{{ params.namespace }}",
        image="busybox",
        command=[
            "sh",
            "-c",
            SCRIPT,
            "stage",
            "{{ params.marker }}",
            "{{ params.broken }}",
            "{{ params.flaky }}",
            "{{ params.marker_dir }}",
        ],
        completions="{{ params.completions }}",
        parallelism=40,
        backoff_limit_per_index=1,
        max_failed_indexes=2,
        deferrable=True,
        progress_interval=2,
        retries=0,
        links={
            "Grafana": "https://grafana.example/d/kbatch?var-dag={dag_id}&var-run={run_id}&var-task={task_id}"
        },
    )
    KbatchJobOperator(
        task_id="bad_links",
        namespace="{{ params.namespace }}",
        image="busybox",
        command=["true"],
        links={"Dashboard": "https://dash.example/{dag}"},
        retries=2,
    )
    EmptyOperator(task_id="not_a_stage")
