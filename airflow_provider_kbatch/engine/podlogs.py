"""Pod logs in the task log: the index prefix, and the logs no live stream delivered.

The waiter follows each pod's log while the Job runs. A stage shorter than the wait's start-up
finishes before the pod watch has listed anything (a real triggerer picks a trigger up about 2 s
after the deferral; a resumed attempt runs one short index), and its task log got no
``[index N]`` line at all. So once the Job is finished, and before the wait reports it,
:func:`read_unstreamed` lists the Job's pods by its ``controller-uid`` selector, keeps those whose
controller owner reference is the Job's uid, and reads the tail of every container log that no
live stream delivered a line of: the last :attr:`LogBudget.tail_lines` lines or
:attr:`LogBudget.tail_bytes` bytes per container, :attr:`LogBudget.total_bytes` in all, within
:attr:`LogBudget.seconds`. Logs already streamed are not repeated; a pod whose log cannot be read
any more (deleted, never started) is named once.

The pods are listed a page at a time (:func:`~airflow_provider_kbatch.engine.podpages.apages`)
and at most :attr:`LogBudget.max_pods` of them (the lowest indexes) are kept to read; at most
``MAX_NAMED`` unreadable pods are named, the rest counted (a Job of 100,000 indexes).

No Kubernetes client here: the hook's ``pod_pages`` (or ``list_pods``) and ``read_pod_log`` do
the I/O.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from airflow_provider_kbatch.engine.podpages import apages
from airflow_provider_kbatch.errors import NotFound, PodLogNotReady
from airflow_provider_kbatch.spec.intervals import IndexSet
from airflow_provider_kbatch.spec.names import CONTROLLER_UID_LABEL, JOB_COMPLETION_INDEX_KEY
from airflow_provider_kbatch.status import logical_index, pod_index, slim_pod


class Log(Protocol):
    """What logging needs of a logger (stdlib ``logging.Logger`` and Airflow's both fit)."""

    def info(self, *args: Any, **kwargs: Any) -> Any: ...
    def warning(self, *args: Any, **kwargs: Any) -> Any: ...
    def debug(self, *args: Any, **kwargs: Any) -> Any: ...


MAX_NAMED = 20  # unreadable pods named one by one in the task log; the others are counted


@dataclass(frozen=True)
class LogBudget:
    """Bounds of the read after the Job finished (the event waits for it)."""

    tail_lines: int = 200
    tail_bytes: int = 64 * 1024
    total_bytes: int = 2 * 1024 * 1024
    seconds: float = 30.0
    concurrency: int = 8
    max_pods: int = 1000  # pods read at most (the lowest indexes); the others count as over budget


@dataclass
class FinalRead:
    """What :func:`read_unstreamed` did (for tests and the summary line)."""

    read: list[tuple[str, str]] = field(default_factory=list)  # (pod, container) read
    lines: int = 0
    unreadable: dict[str, str] = field(default_factory=dict)  # pod -> why, named once
    over_budget: list[tuple[str, str]] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)  # matched the selector, not owned by the Job


@dataclass(order=True)
class _Candidate:
    """A pod whose log the final read may read, ordered by (index, creation, name)."""

    order: tuple[int, str, str]
    pod: dict[str, Any] = field(compare=False)
    containers: list[str] = field(compare=False)

    def __neg__(self) -> _Last:
        return _Last(self)


@dataclass
class _Last:
    """A heap entry that puts the largest candidate first (the one dropped when over max_pods)."""

    candidate: _Candidate

    def __lt__(self, other: _Last) -> bool:
        return other.candidate < self.candidate


def _keep(heap: list[Any], candidate: _Candidate, limits: LogBudget, outcome: FinalRead) -> None:
    """Keep the ``max_pods`` lowest candidates; the dropped ones' logs count as over budget."""
    dropped: _Candidate | None = candidate
    if len(heap) < limits.max_pods:
        heapq.heappush(heap, -candidate)
        dropped = None
    elif heap[0].candidate > candidate:
        dropped = heapq.heapreplace(heap, -candidate).candidate
    if dropped is not None:
        outcome.over_budget.extend((dropped.pod["metadata"]["name"], c) for c in dropped.containers)


async def _candidates(
    hook: Any,
    namespace: str,
    job_uid: str,
    done: set[tuple[str, str]],
    index_map: IndexSet | None,
    limits: LogBudget,
    outcome: FinalRead,
    known: dict[str, Mapping[str, Any]],
) -> tuple[set[str], list[Any]]:
    """List the Job's pods a page at a time: the names of its own pods, and the heap of the
    ``max_pods`` lowest ones with logs to read (never started ones go to ``outcome.unreadable``)."""
    names: set[str] = set()
    kept: list[Any] = []
    async for page in apages(hook, namespace, f"{CONTROLLER_UID_LABEL}={job_uid}"):
        for pod in page:
            name = pod["metadata"]["name"]
            if not owned_by(pod, job_uid):
                outcome.foreign.append(name)
                continue
            names.add(name)
            todo = [c for c in containers_of(pod) if (name, c) not in done]
            if todo and _never_started(pod):
                outcome.unreadable[name] = "it never started"
                known[name] = _index_stub(pod)  # to name the lowest indexes, not the whole pod
            elif todo:
                _keep(kept, _Candidate(_order(pod, index_map), slim_pod(pod), todo), limits, outcome)
    return names, kept


def _index_stub(pod: Mapping[str, Any]) -> dict[str, Any]:
    """What ordering and naming an unreadable pod needs: its name, creation and completion index."""
    meta = pod.get("metadata") or {}
    index = pod_index(pod)
    labels = {JOB_COMPLETION_INDEX_KEY: str(index)} if index is not None else {}
    return {
        "metadata": {
            "name": meta.get("name"),
            "creationTimestamp": meta.get("creationTimestamp"),
            "labels": labels,
        }
    }


def containers_of(pod: Mapping[str, Any]) -> list[str]:
    return [c["name"] for c in (pod.get("spec") or {}).get("containers") or () if c.get("name")]


def log_label(pod: Mapping[str, Any], container: str, index_map: IndexSet | None) -> str:
    """``[index N]`` (``[index N][container]`` for a pod of several containers), or the pod's name
    when it has no index."""
    index = logical_index(pod, index_map)
    prefix = f"[index {index}]" if index is not None else f"[{(pod.get('metadata') or {}).get('name', '')}]"
    return prefix if len(containers_of(pod)) <= 1 else f"{prefix}[{container}]"


def owned_by(pod: Mapping[str, Any], uid: str) -> bool:
    """The pod's controller owner reference is the object with ``uid`` (a selector match is not
    proof: labels can be copied)."""
    refs = (pod.get("metadata") or {}).get("ownerReferences") or ()
    return any(ref.get("uid") == uid and ref.get("controller") for ref in refs)


def _never_started(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") not in (None, "Pending"):
        return False
    states = [s.get("state") or {} for s in status.get("containerStatuses") or ()]
    return not any("running" in s or "terminated" in s for s in states)


def _order(pod: Mapping[str, Any], index_map: IndexSet | None) -> tuple[int, str, str]:
    index = logical_index(pod, index_map)
    meta = pod.get("metadata") or {}
    return (index if index is not None else -1, meta.get("creationTimestamp") or "", meta.get("name", ""))


def _why(err: BaseException) -> str:
    if isinstance(err, NotFound):
        return "the pod is gone"
    if isinstance(err, PodLogNotReady):
        return "its container never started"
    return str(err) or type(err).__name__


async def read_unstreamed(
    hook: Any,
    namespace: str,
    job_name: str,
    job_uid: str,
    *,
    streamed: Iterable[tuple[str, str]],
    seen: Mapping[str, Mapping[str, Any]],
    index_map: IndexSet | None,
    log: Log,
    budget: LogBudget | None = None,
) -> FinalRead:
    """Read the tails of the finished Job's container logs that no live stream delivered.

    ``streamed`` holds the (pod, container) pairs a live stream delivered lines of; ``seen`` the
    pods the pod watch saw (a pod seen but no longer listed was deleted: named, not read). Lines
    go to ``log`` in index order, each with its :func:`log_label`; never raises but
    ``CancelledError``.
    """
    limits = budget or LogBudget()
    done = set(streamed)
    outcome = FinalRead()
    known: dict[str, Mapping[str, Any]] = dict(seen)
    try:
        names, kept = await _candidates(hook, namespace, job_uid, done, index_map, limits, outcome, known)
    except asyncio.CancelledError:
        raise
    except Exception as err:  # logs are best effort: the outcome is what matters
        log.warning("job %s: could not list its pods to read their logs: %s", job_name, err)
        return outcome
    if outcome.foreign:
        log.debug(
            "job %s: pods %s carry its selector but another owner", job_name, outcome.foreign[:MAX_NAMED]
        )
    for name, pod in seen.items():
        if name not in names and any((name, c) not in done for c in containers_of(pod)):
            outcome.unreadable[name] = "the pod was deleted"
    wanted: list[tuple[dict[str, Any], str]] = []
    for candidate in sorted(entry.candidate for entry in kept):
        known[candidate.pod["metadata"]["name"]] = candidate.pod
        wanted.extend((candidate.pod, c) for c in candidate.containers)
    texts = await _read_all(hook, namespace, wanted, limits, outcome)
    _emit(job_name, job_uid, namespace, wanted, texts, index_map, limits, outcome, log, known)
    return outcome


async def _read_all(
    hook: Any,
    namespace: str,
    wanted: list[tuple[dict[str, Any], str]],
    limits: LogBudget,
    outcome: FinalRead,
) -> dict[tuple[str, str], str | BaseException]:
    """Read the wanted logs, ``concurrency`` at a time, in order, each reserving ``tail_bytes`` of
    the total budget before it starts (the total is never exceeded)."""
    texts: dict[tuple[str, str], str | BaseException] = {}
    slots = asyncio.Semaphore(max(1, limits.concurrency))
    committed = 0  # bytes read, plus tail_bytes for every read under way

    async def read(pod: str, container: str) -> None:
        nonlocal committed
        async with slots:
            if committed + limits.tail_bytes > limits.total_bytes:
                outcome.over_budget.append((pod, container))
                return
            committed += limits.tail_bytes
            try:
                text = await hook.read_pod_log(
                    namespace, pod, container, tail_lines=limits.tail_lines, limit_bytes=limits.tail_bytes
                )
            except asyncio.CancelledError:
                raise
            except Exception as err:
                texts[(pod, container)] = err
                committed -= limits.tail_bytes
                return
            texts[(pod, container)] = text
            committed -= limits.tail_bytes - min(limits.tail_bytes, len(text.encode("utf-8", "replace")))

    tasks = [asyncio.ensure_future(read(p["metadata"]["name"], c)) for p, c in wanted]
    if not tasks:
        return texts
    try:
        _, late = await asyncio.wait(tasks, timeout=limits.seconds)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for pod, container in ((p["metadata"]["name"], c) for p, c in wanted):
        if late and (pod, container) not in texts and (pod, container) not in outcome.over_budget:
            texts[(pod, container)] = TimeoutError(f"not read within {limits.seconds:.0f}s")
    return texts


def _emit(
    job_name: str,
    job_uid: str,
    namespace: str,
    wanted: list[tuple[dict[str, Any], str]],
    texts: Mapping[tuple[str, str], str | BaseException],
    index_map: IndexSet | None,
    limits: LogBudget,
    outcome: FinalRead,
    log: Log,
    known: Mapping[str, Mapping[str, Any]],
) -> None:
    for pod, container in wanted:
        name = pod["metadata"]["name"]
        text = texts.get((name, container))
        if isinstance(text, BaseException):
            outcome.unreadable.setdefault(name, _why(text))
            continue
        if text is None:
            continue
        outcome.read.append((name, container))
        lines = text.splitlines()
        label = log_label(pod, container, index_map)
        if len(lines) >= limits.tail_lines or len(text.encode("utf-8", "replace")) >= limits.tail_bytes:
            log.info(
                "%s (the last %d lines of %s/%s only; kubectl logs -n %s %s -c %s for all)",
                label,
                len(lines),
                name,
                container,
                namespace,
                name,
                container,
            )
        for line in lines:
            log.info("%s %s", label, line)
        outcome.lines += len(lines)
    if outcome.read:
        log.info(
            "job %s: %d lines of %d container logs read after it finished (not streamed live)",
            job_name,
            outcome.lines,
            len(outcome.read),
        )
    unreadable = sorted(
        outcome.unreadable.items(), key=lambda item: _order(known.get(item[0], {}), index_map)
    )
    for name, why in unreadable[:MAX_NAMED]:
        index = logical_index(known.get(name, {}), index_map)
        where = f" (index {index})" if index is not None else ""
        log.warning("job %s: the log of pod %s%s cannot be read: %s", job_name, name, where, why)
    if len(unreadable) > MAX_NAMED:
        log.warning("job %s: the logs of %d more pods cannot be read", job_name, len(unreadable) - MAX_NAMED)
    if outcome.over_budget:
        log.warning(
            "job %s: %d more container logs not read (%d KiB read after the job finished is the limit); "
            "kubectl logs -n %s -l %s=%s",
            job_name,
            len(outcome.over_budget),
            limits.total_bytes // 1024,
            namespace,
            CONTROLLER_UID_LABEL,
            job_uid,
        )
