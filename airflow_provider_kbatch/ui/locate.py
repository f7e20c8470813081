"""Where a task instance's stage lives, from Airflow's metadata database (api-server side).

The operator publishes the Job it submitted as the XCom ``job_manifest`` (namespace, name) and its
rendered template fields hold ``conn_id``, ``namespace`` and ``completions``. Nothing here returns
the manifest itself: it goes no further than the namespace and the names it names. For the run
view: every task instance's state and times (:func:`run_task_times`) and the DAG's task
dependencies from the run's serialized DAG (:func:`dag_upstream`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from airflow_provider_kbatch.engine.stageview import stage_location
from airflow_provider_kbatch.pipeline.lineage import TaskTimes
from airflow_provider_kbatch.spec.names import LABEL_MANAGED_BY, MANAGED_BY, JobIdentity

#: ``TaskInstance.operator`` of the tasks that run one stage as one Job.
KBATCH_STAGE_OPERATORS = frozenset({"KbatchJobOperator"})
DEFAULT_CONN_ID = "kubernetes_default"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageLocation:
    identity: JobIdentity
    operator: str | None
    state: str | None
    is_stage: bool
    conn_id: str
    namespace: str | None  # None: the connection's namespace
    job_name: str | None
    completions: int | None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value and value != "None" else None


def locate(session: Session, dag_id: str, run_id: str, task_id: str, map_index: int) -> StageLocation | None:
    """The stage of one task instance, or None when the task instance does not exist."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel

    ti = session.scalar(
        select(TaskInstance).where(
            TaskInstance.dag_id == dag_id,
            TaskInstance.run_id == run_id,
            TaskInstance.task_id == task_id,
            TaskInstance.map_index == map_index,
        )
    )
    if ti is None:
        return None
    rendered = (
        session.scalar(
            select(RenderedTaskInstanceFields.rendered_fields).where(
                RenderedTaskInstanceFields.dag_id == dag_id,
                RenderedTaskInstanceFields.run_id == run_id,
                RenderedTaskInstanceFields.task_id == task_id,
                RenderedTaskInstanceFields.map_index == map_index,
            )
        )
        or {}
    )
    xcom = session.scalar(
        select(XComModel).where(
            XComModel.dag_id == dag_id,
            XComModel.run_id == run_id,
            XComModel.task_id == task_id,
            XComModel.map_index == map_index,
            XComModel.key == "job_manifest",
        )
    )
    manifest = XComModel.deserialize_value(xcom) if xcom is not None else None
    manifest = manifest if isinstance(manifest, dict) else None
    namespace, job_name = stage_location(manifest)
    labels = ((manifest or {}).get("metadata") or {}).get("labels") or {}
    is_stage = ti.operator in KBATCH_STAGE_OPERATORS or labels.get(LABEL_MANAGED_BY) == MANAGED_BY
    completions = _int(rendered.get("completions"))
    if completions is None and manifest is not None:
        completions = _int((manifest.get("spec") or {}).get("completions"))
    return StageLocation(
        identity=JobIdentity(dag_id, task_id, run_id, map_index, ti.try_number or 1),
        operator=ti.operator,
        state=None if ti.state is None else str(ti.state),
        is_stage=is_stage,
        conn_id=_str(rendered.get("conn_id")) or DEFAULT_CONN_ID,
        namespace=namespace or _str(rendered.get("namespace")),
        job_name=job_name,
        completions=completions,
    )


def run_locations(session: Session, dag_id: str, run_id: str) -> list[StageLocation]:
    """Every kbatch stage task instance of one DAG run."""
    from airflow.models.taskinstance import TaskInstance

    rows = session.execute(
        select(TaskInstance.task_id, TaskInstance.map_index).where(
            TaskInstance.dag_id == dag_id,
            TaskInstance.run_id == run_id,
            TaskInstance.operator.in_(sorted(KBATCH_STAGE_OPERATORS)),
        )
    ).all()
    found = [locate(session, dag_id, run_id, task_id, map_index) for task_id, map_index in rows]
    return [loc for loc in found if loc is not None]


def run_task_times(session: Session, dag_id: str, run_id: str) -> list[TaskTimes]:
    """Every task instance of the run with its state and times (the latest try), one query."""
    from airflow.models.taskinstance import TaskInstance

    rows = session.execute(
        select(
            TaskInstance.task_id,
            TaskInstance.map_index,
            TaskInstance.state,
            TaskInstance.operator,
            TaskInstance.try_number,
            TaskInstance.queued_dttm,
            TaskInstance.start_date,
            TaskInstance.end_date,
        ).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
    ).all()
    return [
        TaskTimes(
            task_id=task_id,
            map_index=map_index,
            state=None if state is None else str(state),
            is_stage=operator in KBATCH_STAGE_OPERATORS,
            try_number=try_number,
            queued=queued,
            start=start,
            end=end,
        )
        for task_id, map_index, state, operator, try_number, queued, start, end in rows
    ]


@cache
def _dag_bag() -> Any:
    from airflow.models.dagbag import DBDagBag

    return DBDagBag(load_op_links=False)


def dag_upstream(session: Session, dag_id: str, run_id: str) -> dict[str, list[str]] | None:
    """Task id -> upstream task ids, from the serialized DAG of the run's DAG version (``None``
    when the run or its serialized DAG cannot be found)."""
    from airflow.models.dagrun import DagRun

    dag_run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
    if dag_run is None:
        return None
    try:
        dag = _dag_bag().get_dag_for_run(dag_run, session)
    except Exception as err:  # a DAG that no longer deserializes: the ledger's edges still show
        log.warning("kbatch ui: the serialized DAG of %s/%s: %s", dag_id, run_id, err)
        return None
    if dag is None:
        return None
    return {task.task_id: sorted(task.upstream_task_ids) for task in dag.tasks}
