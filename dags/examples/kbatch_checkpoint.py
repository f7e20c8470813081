"""A long checkpointed stage: killed half-way, its index resumes from the last checkpoint.

Each of 2 indexes works through ``item_count`` items, saving a checkpoint after every one
(``checkpoint=True`` gives each index ``$KBATCH_CHECKPOINT_DIR/<logical index>`` on the run's
workspace). Kill a pod while it runs (``python -m airflow_provider_kbatch.devcluster fault kill
NAMESPACE POD --signal SIGKILL`` on the local cluster): the Job controller replaces it
(``backoff_limit_per_index``) and the new pod continues where the checkpoint says. Each index's
result reports ``resumed_from`` and ``processed``; ``work.log`` next to the checkpoint lists who
did which item. The workspace is retained so the checkpoints can be inspected after the run.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_kbatch.operators.job import KbatchJobOperator
from airflow_provider_kbatch.spec.stage import EnvFromField
from airflow_provider_kbatch.workspace import Workspace

with DAG(
    dag_id="kbatch_example_checkpoint",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "namespace": Param("default", type="string"),
        "item_count": Param(20, type="integer", description="items per index"),
        "item_seconds": Param(0.5, type="number", description="seconds of work per item"),
    },
    tags=["kbatch", "example", "checkpoint"],
) as dag:
    crunch = KbatchJobOperator(
        task_id="crunch",
        namespace="{{ params.namespace }}",
        image="ghcr.io/example/kbatch-worker:0.1.0",
        command=["python", "-m", "airflow_provider_kbatch.examples.checkpointed"],
        env={
            "ITEMS": "{{ params.item_count }}",
            "ITEM_SECONDS": "{{ params.item_seconds }}",
            "POD_NAME": EnvFromField("metadata.name"),
        },
        completions=2,
        parallelism=2,
        backoff_limit_per_index=2,
        workspace=Workspace(create=True, size="64Mi", retention="retain"),
        checkpoint=True,
        output="crunched",
        resources={"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        progress_interval=5,
    )
