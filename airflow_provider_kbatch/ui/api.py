"""The read-only API and pages of the kbatch UI plugin, a FastAPI app under the api-server.

Mounted at ``/kbatch`` (``KbatchPlugin.fastapi_apps``). Every data endpoint depends on Airflow's
own security dependencies: ``requires_access_dag`` (GET on the DAG's task instances, runs or task
logs) resolves the user from the ``Authorization: Bearer`` header or the UI's ``_token`` cookie
(which the iframe sends, same origin) and asks the auth manager. The cluster is read with the
task's connection through :class:`KbatchHook`; no credential, manifest or Secret goes out: only
states, pod names, exit codes, reasons, times, ledger records and log tails.

Endpoints (all GET; query parameters ``dag_id``, ``run_id``, ``task_id``, ``map_index``):

- ``/kbatch/api/stage``: the index grid, counts, reasons, collapsed ranges, the ledger record;
- ``/kbatch/api/stage/index?index=N``: one index's attempts (pods, exit codes, reasons, try);
- ``/kbatch/api/stage/log?pod=P&lines=200``: the tail of one attempt's log (TASK_LOGS access);
- ``/kbatch/api/run`` (``dag_id``, ``run_id``): the run's stages from the ledger (timings, Job
  presence, per-try attempts), its graph (lineage and Airflow dependencies) and critical path
  (:mod:`airflow_provider_kbatch.pipeline.lineage`; the JSON is described in docs/internals.md);
- ``/kbatch/view/stage``, ``/kbatch/view/run``: the HTML pages of the two UI tabs.
"""

from __future__ import annotations

import datetime
import logging
import time
from functools import cache
from importlib import resources
from typing import Annotated, Any

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import requires_access_dag
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, Response

from airflow_provider_kbatch.engine.indexgrid import job_presence, record_summary
from airflow_provider_kbatch.engine.stageview import (
    pod_log_tail,
    read_run_jobs,
    read_run_stages,
    read_stage_view,
)
from airflow_provider_kbatch.errors import KbatchError
from airflow_provider_kbatch.pipeline.ledger_names import stage_key
from airflow_provider_kbatch.pipeline.lineage import node_id, run_graph
from airflow_provider_kbatch.ui.locate import (
    StageLocation,
    dag_upstream,
    locate,
    run_locations,
    run_task_times,
)

log = logging.getLogger(__name__)

NOT_A_STAGE = (
    "this task is not a kbatch stage (not a KbatchJobOperator): the kbatch tab shows on every task "
    "instance in Airflow 3.3, and has nothing to show for this one"
)

TaskInstanceAccess = Depends(requires_access_dag("GET", DagAccessEntity.TASK_INSTANCE))
TaskLogAccess = Depends(requires_access_dag("GET", DagAccessEntity.TASK_LOGS))
RunAccess = Depends(requires_access_dag("GET", DagAccessEntity.RUN))

DagId = Annotated[str, Query(min_length=1)]
RunId = Annotated[str, Query(min_length=1)]
TaskId = Annotated[str, Query(min_length=1)]
MapIndex = Annotated[int, Query(ge=-1)]


def _hook(conn_id: str) -> Any:
    from airflow_provider_kbatch.hooks.kbatch import KbatchHook

    return KbatchHook(conn_id=conn_id)


def _cluster(loc: StageLocation) -> tuple[Any, str]:
    hook = _hook(loc.conn_id)
    try:
        return hook, loc.namespace or hook.get_namespace()
    except Exception as err:  # the connection could not be loaded: say which, not its contents
        log.warning("kbatch ui: connection %s: %s", loc.conn_id, err)
        raise HTTPException(502, f"the cluster of connection {loc.conn_id!r} could not be reached") from None


def _located(session: Any, dag_id: str, run_id: str, task_id: str, map_index: int) -> StageLocation:
    loc = locate(session, dag_id, run_id, task_id, map_index)
    if loc is None:
        raise HTTPException(404, f"no task instance {dag_id}/{run_id}/{task_id}[{map_index}]")
    return loc


def _cluster_error(what: str, err: Exception) -> HTTPException:
    log.warning("kbatch ui: %s: %s", what, err)
    return HTTPException(502, f"{what}: {type(err).__name__}: {str(err)[:300]}")


def _head(loc: StageLocation) -> dict[str, Any]:
    i = loc.identity
    return {
        "dag_id": i.dag_id,
        "run_id": i.run_id,
        "task_id": i.task_id,
        "map_index": i.map_index,
        "try_number": i.try_number,
        "operator": loc.operator,
        "task_state": loc.state,
        "kbatch": loc.is_stage,
    }


router = APIRouter()


@router.get("/api/stage", dependencies=[TaskInstanceAccess])
def stage(
    session: SessionDep, dag_id: DagId, run_id: RunId, task_id: TaskId, map_index: MapIndex = -1
) -> Any:
    loc = _located(session, dag_id, run_id, task_id, map_index)
    if not loc.is_stage:
        return {**_head(loc), "message": NOT_A_STAGE}
    hook, namespace = _cluster(loc)
    try:
        view = read_stage_view(
            hook, namespace, loc.identity, completions=loc.completions or 1, job_name=loc.job_name
        )
    except KbatchError as err:
        raise _cluster_error("reading the stage", err) from None
    return {
        **_head(loc),
        "namespace": namespace,
        "job": view.job_name,
        "job_status": job_presence(view.record, view.job_names),
        "grid": view.grid.to_dict(),
        "ledger": record_summary(view.record),
    }


@router.get("/api/stage/index", dependencies=[TaskInstanceAccess])
def stage_index(
    session: SessionDep,
    dag_id: DagId,
    run_id: RunId,
    task_id: TaskId,
    index: Annotated[int, Query(ge=0)],
    map_index: MapIndex = -1,
) -> Any:
    loc = _located(session, dag_id, run_id, task_id, map_index)
    if not loc.is_stage:
        return {**_head(loc), "message": NOT_A_STAGE}
    if loc.completions is not None and index >= loc.completions:
        raise HTTPException(404, f"index {index}: the stage has {loc.completions} indexes")
    hook, namespace = _cluster(loc)
    try:
        view = read_stage_view(
            hook, namespace, loc.identity, completions=loc.completions or 1, job_name=loc.job_name
        )
    except KbatchError as err:
        raise _cluster_error("reading the stage", err) from None
    return {**_head(loc), "job_exists": view.grid.job_exists, **view.grid.index_detail(index)}


@router.get("/api/stage/log", dependencies=[TaskLogAccess])
def stage_log(
    session: SessionDep,
    dag_id: DagId,
    run_id: RunId,
    task_id: TaskId,
    pod: Annotated[str, Query(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")],
    map_index: MapIndex = -1,
    lines: Annotated[int, Query(ge=1, le=2000)] = 200,
) -> Any:
    loc = _located(session, dag_id, run_id, task_id, map_index)
    if not loc.is_stage:
        return {**_head(loc), "message": NOT_A_STAGE}
    hook, namespace = _cluster(loc)
    try:
        return pod_log_tail(hook, namespace, loc.identity, pod, lines=lines)
    except KbatchError as err:
        raise _cluster_error(f"reading the log of pod {pod}", err) from None


def _run_ledgers(
    stages: list[StageLocation], dag_id: str, run_id: str
) -> tuple[dict[str, Any], dict[str, dict[str, Any]], list[str]]:
    """Stage records (node id -> record), each stage's Job presence, the namespaces read: one
    ledger read and one Job list per (connection, namespace) the run's stages use."""
    records: dict[str, Any] = {}
    presence: dict[str, dict[str, Any]] = {}
    read: dict[tuple[str, str], tuple[dict[str, Any], frozenset[str] | None]] = {}
    for loc in stages:
        hook, namespace = _cluster(loc)
        key = (loc.conn_id, namespace)
        if key not in read:
            try:
                found = read_run_stages(hook, namespace, dag_id, run_id)
            except KbatchError as err:
                raise _cluster_error("reading the run ledger", err) from None
            try:
                jobs: frozenset[str] | None = read_run_jobs(hook, namespace, dag_id, run_id)
            except KbatchError as err:  # the ledger alone still gives the view
                log.warning("kbatch ui: listing the Jobs of %s/%s: %s", dag_id, run_id, err)
                jobs = None
            read[key] = (found, jobs)
            for each in found.values():
                if each.task_id is not None:
                    mapped = each.map_index if each.map_index is not None else -1
                    records.setdefault(node_id(each.task_id, mapped), each)
        found, jobs = read[key]
        ident = node_id(loc.identity.task_id, loc.identity.map_index)
        record = found.get(stage_key(loc.identity.task_id, loc.identity.map_index))
        if record is not None:
            records[ident] = record
        presence[ident] = {"namespace": namespace, **job_presence(record, jobs)}
    return records, presence, sorted({ns for _, ns in read})


@router.get("/api/run", dependencies=[RunAccess])
def run(session: SessionDep, dag_id: DagId, run_id: RunId) -> Any:
    started = time.monotonic()
    stages = run_locations(session, dag_id, run_id)
    records, presence, namespaces = _run_ledgers(stages, dag_id, run_id)
    upstream = dag_upstream(session, dag_id, run_id)
    graph = run_graph(
        records,
        run_task_times(session, dag_id, run_id),
        upstream or {},
        now=datetime.datetime.now(datetime.timezone.utc),
    )
    nodes = {n.id: n for n in graph.nodes}
    on_path = set(graph.critical_path.nodes)
    out = []
    for loc in stages:
        ident = node_id(loc.identity.task_id, loc.identity.map_index)
        node = nodes.get(ident)
        out.append(
            {
                "id": ident,
                "task_id": loc.identity.task_id,
                "map_index": loc.identity.map_index,
                "task_state": loc.state,
                "try_number": loc.identity.try_number,
                "namespace": presence[ident]["namespace"],
                "completions": loc.completions,
                "job": {k: v for k, v in presence[ident].items() if k != "namespace"},
                "timings": node.timings.to_dict() if node is not None else None,
                "critical": ident in on_path,
                "ledger": record_summary(records.get(ident)),
            }
        )
    return {
        "dag_id": dag_id,
        "run_id": run_id,
        "namespaces": namespaces,
        "stages": out,
        "graph": graph.to_dict(),
        "critical_path": graph.critical_path.to_dict(),
        "dependencies": "serialized_dag" if upstream is not None else "unavailable",
        "read_ms": round((time.monotonic() - started) * 1000),
    }


@router.get("/view/stage", response_class=HTMLResponse)
def stage_page() -> Response:
    return HTMLResponse(_asset("stage.html"))


@router.get("/view/run", response_class=HTMLResponse)
def run_page() -> Response:
    return HTMLResponse(_asset("run.html"))


@router.get("/static/{name}")
def static(name: str) -> Response:
    media = {"js": "text/javascript", "css": "text/css"}.get(name.rsplit(".", 1)[-1])
    if media is None or name not in {"kbatch.js", "kbatch.css", "run.js"}:
        raise HTTPException(404, "no such asset")
    return Response(_asset(name), media_type=media, headers={"Cache-Control": "no-cache"})


def create_app() -> FastAPI:
    app = FastAPI(
        title="kbatch",
        description="Read-only view of kbatch stages: index grid, attempts, log tails, run ledger.",
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.include_router(router)
    return app


@cache
def _asset(name: str) -> str:
    return (resources.files("airflow_provider_kbatch.ui") / "static" / name).read_text(encoding="utf-8")
