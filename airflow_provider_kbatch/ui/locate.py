"""Where a task instance's stage lives, from Airflow's metadata database (api-server side).

The operator publishes the Job it submitted as the XCom ``job_manifest`` (namespace, name) and its
rendered template fields hold ``conn_id``, ``namespace`` and ``completions``. Nothing here returns
the manifest itself: it goes no further than the namespace and the names it names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from airflow_provider_kbatch.engine.stageview import stage_location
from airflow_provider_kbatch.spec.names import LABEL_MANAGED_BY, MANAGED_BY, JobIdentity

#: ``TaskInstance.operator`` of the tasks that run one stage as one Job.
KBATCH_STAGE_OPERATORS = frozenset({"KbatchJobOperator"})
DEFAULT_CONN_ID = "kubernetes_default"


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
