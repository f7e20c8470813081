"""A DAG run's stage graph, its stages' timings and its critical path (pure: records in, graph out).

What the UI plugin's run view shows. Nothing here reads the cluster or Airflow: the caller hands in
the run's ledger stage records, its task instances (:class:`TaskTimes`, from Airflow's database)
and the DAG's task dependencies (task id -> upstream task ids, from the serialized DAG).

**Nodes** are the run's task instances (``task`` or ``task[2]`` for a mapped one); a node is a
kbatch stage when it has a ledger record or the caller says so.

**Edges** (``producer -> consumer``) come from two places:

- ``data``: the ledger. A stage's record lists the inputs it consumed (``inputs``: input name ->
  producing stage and the manifest digest it had when the consumer's inputs were checked). The
  edge is ``current`` when the producer's recorded output still has that digest, ``stale`` when
  the producer re-ran since and recorded another one, ``unknown`` when the producer has no
  recorded output (any more);
- ``dependency``: Airflow's ``upstream_task_ids`` where no data edge already links the two tasks.

An upstream task that is mapped links every one of its map indexes.

**Timings** of a node (seconds, ``None`` when unknown):

- ``airflow_queue``: the task instance's ``queued_dttm`` -> ``start_date`` (waiting for an
  executor slot; the latest Airflow try, the one Airflow keeps). Unknown (``None``) when it was
  queued after it started: a deferred task is queued again to resume, and keeps its first start;
- ``job_queue``: for each ledger attempt, the Job's ``creationTimestamp`` -> ``status.startTime``
  (suspended, e.g. waiting in a Kueue queue), summed over the attempts;
- ``queue`` = ``airflow_queue`` + ``job_queue`` (either alone when the other is unknown);
- ``run``: for each ledger attempt, the Job's start -> its end (the operator's own ``started`` /
  ``ended`` when the Job's were not recorded; to ``now`` while it runs), summed over every
  attempt of every try (a resumed try's Job ran only the indexes left, and its earlier tries'
  attempts count too); for a task that is not a stage, the task instance's start -> end;
- ``total`` = ``queue`` + ``run``.

**Critical path**: the chain of nodes, following the edges, whose summed ``total`` is the
largest: the stages that decided how long the run took (gaps between tasks, the scheduler's
latency, are not counted). Nodes that never ran (no timing at all: ``upstream_failed``, not yet
started) are never on it; a failed or a running stage is, with the time it took so far. Ties
are broken the same way every time: the path whose node ids, compared in order from its start,
sort first. Edges that would close a cycle (possible only with inconsistent records) are left out
of the path computation and reported in ``cycle_edges``.
"""

from __future__ import annotations

import datetime
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from airflow_provider_kbatch.pipeline.ledger_schema import Attempt, StageRecord
from airflow_provider_kbatch.spec.times import time_or_none

EdgeKind = Literal["data", "dependency"]
EdgeFreshness = Literal["current", "stale", "unknown"]


@dataclass(frozen=True)
class TaskTimes:
    """One task instance of the run, as Airflow's database has it (times: ISO strings or
    datetimes)."""

    task_id: str
    map_index: int = -1
    state: str | None = None
    is_stage: bool = False
    try_number: int | None = None
    queued: Any = None
    start: Any = None
    end: Any = None


@dataclass(frozen=True)
class Timings:
    airflow_queue: float | None
    job_queue: float | None
    run: float | None

    @property
    def queue(self) -> float | None:
        if self.airflow_queue is None and self.job_queue is None:
            return None
        return round((self.airflow_queue or 0.0) + (self.job_queue or 0.0), 3)

    @property
    def total(self) -> float | None:
        if self.queue is None and self.run is None:
            return None
        return round((self.queue or 0.0) + (self.run or 0.0), 3)

    def to_dict(self) -> dict[str, float | None]:
        return {
            "airflow_queue": self.airflow_queue,
            "job_queue": self.job_queue,
            "queue": self.queue,
            "run": self.run,
            "total": self.total,
        }


@dataclass(frozen=True)
class Node:
    id: str
    task_id: str
    map_index: int
    is_stage: bool
    state: str | None  # the ledger's stage state, else the task instance's
    task_state: str | None
    timings: Timings
    tries: tuple[int, ...]  # Airflow tries that ran a Job (or a cache hit) of the stage, from the ledger
    attempts: int  # ledger attempts (Jobs), every try; attempts_dropped included
    layer: int = 0  # longest chain of edges from a source: the column of a layered drawing

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "task_id": self.task_id,
            "map_index": self.map_index,
            "kbatch": self.is_stage,
            "state": self.state,
            "task_state": self.task_state,
            "timings": self.timings.to_dict(),
            "tries": list(self.tries),
            "attempts": self.attempts,
            "layer": self.layer,
        }


@dataclass(frozen=True)
class Edge:
    producer: str
    consumer: str
    kind: EdgeKind
    input: str | None = None
    digest: str | None = None
    freshness: EdgeFreshness | None = None  # data edges only

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": self.producer,
            "to": self.consumer,
            "kind": self.kind,
            "input": self.input,
            "digest": self.digest,
            "freshness": self.freshness,
        }


@dataclass(frozen=True)
class CriticalPath:
    nodes: tuple[str, ...]
    seconds: float
    tied: bool  # another chain took exactly as long

    def to_dict(self) -> dict[str, Any]:
        return {"nodes": list(self.nodes), "seconds": self.seconds, "tied": self.tied}


@dataclass(frozen=True)
class RunGraph:
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    critical_path: CriticalPath
    cycle_edges: tuple[Edge, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        on_path = set(itertools.pairwise(self.critical_path.nodes))
        return {
            "nodes": [n.to_dict() for n in self.nodes],
            "edges": [{**e.to_dict(), "critical": (e.producer, e.consumer) in on_path} for e in self.edges],
            "critical_path": self.critical_path.to_dict(),
            "cycle_edges": [e.to_dict() for e in self.cycle_edges],
        }


def node_id(task_id: str, map_index: int = -1) -> str:
    return task_id if map_index is None or map_index < 0 else f"{task_id}[{map_index}]"


# --------------------------------------------------------------------------- timings


def _span(start: Any, end: Any, now: datetime.datetime | None) -> float | None:
    began = start if isinstance(start, datetime.datetime) else time_or_none(start)
    ended = end if isinstance(end, datetime.datetime) else time_or_none(end)
    if began is None:
        return None
    if ended is None:
        if now is None:
            return None
        ended = now
    return round(max(0.0, (ended - began).total_seconds()), 3)


def _sum(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known), 3) if known else None


def _attempt_queue(a: Attempt) -> float | None:
    return _span(a.job_created, a.job_started, None) if a.job_started else None


def _attempt_run(a: Attempt, now: datetime.datetime) -> float | None:
    if a.job.startswith("cache-hit:"):
        return 0.0  # no Job ran
    start = a.job_started or a.started
    end = a.job_ended or a.ended
    return _span(start, end, now if end is None else None)


def _airflow_queue(task: TaskTimes | None) -> float | None:
    if task is None:
        return None
    queued, start = time_or_none(task.queued), time_or_none(task.start)
    if queued is None or start is None or queued > start:  # re-queued to resume after a deferral
        return None
    return round((start - queued).total_seconds(), 3)


def stage_timings(record: StageRecord | None, task: TaskTimes | None, now: datetime.datetime) -> Timings:
    """Queue wait and run of one node (rules in the module docstring)."""
    airflow_queue = _airflow_queue(task)
    attempts = record.attempts if record is not None else ()
    if attempts:
        return Timings(
            airflow_queue=airflow_queue,
            job_queue=_sum(_attempt_queue(a) for a in attempts),
            run=_sum(_attempt_run(a, now) for a in attempts),
        )
    run = None
    if task is not None and task.start is not None:
        finished = task.end is not None or (task.state or "") in ("success", "failed", "skipped")
        run = _span(task.start, task.end, None if finished else now)
    return Timings(airflow_queue=airflow_queue, job_queue=None, run=run)


# --------------------------------------------------------------------------- edges


def data_edges(records: Mapping[str, StageRecord], ids_by_task: Mapping[str, Sequence[str]]) -> list[Edge]:
    """One edge per recorded input of every stage record (``records``: node id -> record)."""
    out: list[Edge] = []
    for consumer, record in sorted(records.items()):
        for name, item in sorted(record.inputs.items()):
            for producer in ids_by_task.get(item.stage) or (item.stage,):
                produced = records.get(producer)
                output = produced.output if produced is not None else None
                freshness: EdgeFreshness = (
                    "unknown"
                    if output is None or output.name != name
                    else "current"
                    if output.manifest_digest == item.manifest_digest
                    else "stale"
                )
                out.append(Edge(producer, consumer, "data", name, item.manifest_digest, freshness))
    return out


def dependency_edges(
    upstream: Mapping[str, Iterable[str]],
    ids_by_task: Mapping[str, Sequence[str]],
    linked: set[tuple[str, str]],
) -> list[Edge]:
    """Airflow's task dependencies between the run's nodes, where no data edge links them."""
    out: list[Edge] = []
    for task_id in sorted(upstream):
        for up in sorted(set(upstream[task_id])):
            for producer in ids_by_task.get(up, ()):
                for consumer in ids_by_task.get(task_id, ()):
                    if (producer, consumer) not in linked and producer != consumer:
                        out.append(Edge(producer, consumer, "dependency"))
    return out


# --------------------------------------------------------------------------- the path


def _order(ids: Sequence[str], edges: Sequence[Edge]) -> tuple[list[str], list[Edge], list[Edge]]:
    """Kahn's topological order (smallest id first); the edges kept, and those closing a cycle."""
    preds: dict[str, set[str]] = {i: set() for i in ids}
    succs: dict[str, set[str]] = {i: set() for i in ids}
    for e in edges:
        if e.producer in preds and e.consumer in preds:
            preds[e.consumer].add(e.producer)
            succs[e.producer].add(e.consumer)
    remaining = {i: len(p) for i, p in preds.items()}
    ready = sorted(i for i, n in remaining.items() if n == 0)
    order: list[str] = []
    while ready:
        current = ready.pop(0)
        order.append(current)
        for nxt in sorted(succs[current]):
            remaining[nxt] -= 1
            if remaining[nxt] == 0:
                ready.append(nxt)
                ready.sort()
    stuck = sorted(set(ids) - set(order))
    order.extend(stuck)  # in a cycle: placed last, their edges among themselves ignored
    position = {i: k for k, i in enumerate(order)}
    kept = [e for e in edges if e.producer in position and e.consumer in position]
    acyclic = [e for e in kept if position[e.producer] < position[e.consumer]]
    cyclic = [e for e in kept if position[e.producer] >= position[e.consumer]]
    return order, acyclic, cyclic


def critical_path(
    weights: Mapping[str, float | None], edges: Sequence[Edge]
) -> tuple[CriticalPath, list[Edge], dict[str, int]]:
    """The heaviest chain (rules in the module docstring); the cycle edges left out; each node's
    layer (longest chain of edges from a source, every node counted)."""
    order, acyclic, cyclic = _order(sorted(weights), edges)
    preds: dict[str, list[str]] = {i: [] for i in order}
    succs: dict[str, list[str]] = {i: [] for i in order}
    for e in acyclic:
        preds[e.consumer].append(e.producer)
        succs[e.producer].append(e.consumer)
    layer: dict[str, int] = {}
    best: dict[str, tuple[float, tuple[str, ...]]] = {}  # heaviest chain ending at the node
    count: dict[str, int] = {}  # how many chains ending at the node are that heavy
    for current in order:
        layer[current] = max((layer[p] + 1 for p in preds[current]), default=0)
        weight = weights[current]
        if weight is None:
            continue  # never ran: not on the path, and no path goes through it
        ran = [p for p in preds[current] if p in best]
        if ran:
            heaviest = max(best[p][0] for p in ran)
            tops = [p for p in ran if best[p][0] == heaviest]
            chosen = min((best[p] for p in tops), key=lambda c: c[1])
            count[current] = sum(count[p] for p in tops)
        else:
            chosen, count[current] = (0.0, ()), 1
        best[current] = (round(chosen[0] + weight, 3), (*chosen[1], current))
    if not best:
        return CriticalPath((), 0.0, False), cyclic, layer
    top = max(total for total, _ in best.values())
    # the ends of maximal chains: a successor with the same total only extends them by a 0 s node
    ends = [
        n
        for n, (total, _) in best.items()
        if total == top and not any(s in best and best[s][0] == total for s in succs[n])
    ]
    chain = min((best[n][1] for n in ends), default=max(best.values())[1])
    return CriticalPath(chain, top, sum(count[n] for n in ends) > 1), cyclic, layer


def run_graph(
    records: Mapping[str, StageRecord],
    tasks: Iterable[TaskTimes],
    upstream: Mapping[str, Iterable[str]],
    *,
    now: datetime.datetime,
) -> RunGraph:
    """The run's graph: nodes (every task instance, and every ledger record without one), data
    and dependency edges, timings and the critical path. ``records``: node id -> stage record."""
    by_id = {node_id(t.task_id, t.map_index): t for t in tasks}
    ids = sorted(set(by_id) | set(records))
    ids_by_task: dict[str, list[str]] = {}
    for i in ids:
        record, task = records.get(i), by_id.get(i)
        task_id = task.task_id if task is not None else (record.task_id if record and record.task_id else i)
        ids_by_task.setdefault(task_id, []).append(i)
    data = data_edges(records, ids_by_task)
    linked = {(e.producer, e.consumer) for e in data}
    edges = [*data, *dependency_edges(upstream, ids_by_task, linked)]
    timings = {i: stage_timings(records.get(i), by_id.get(i), now) for i in ids}
    path, cyclic, layers = critical_path({i: t.total for i, t in timings.items()}, edges)
    nodes = []
    for i in ids:
        record, task = records.get(i), by_id.get(i)
        task_id = task.task_id if task is not None else (record.task_id if record and record.task_id else i)
        map_index = task.map_index if task is not None else record.map_index if record is not None else None
        attempts = record.attempts if record is not None else ()
        nodes.append(
            Node(
                id=i,
                task_id=task_id,
                map_index=map_index if map_index is not None else -1,
                is_stage=record is not None or (task is not None and task.is_stage),
                state=record.state if record is not None else (task.state if task else None),
                task_state=task.state if task is not None else None,
                timings=timings[i],
                tries=tuple(sorted({a.try_number for a in attempts})),
                attempts=len(attempts) + (record.attempts_dropped if record is not None else 0),
                layer=layers.get(i, 0),
            )
        )
    return RunGraph(tuple(nodes), tuple(edges), path, tuple(cyclic))
