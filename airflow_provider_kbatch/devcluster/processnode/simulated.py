"""Simulated nodes: pods that complete without running a process (the control plane's scale mode).

The real API server, scheduler and Job controller do everything they do with real pods; only the
kubelet's process is simulated (as KWOK does). A simulated Node carries the label and the taint
``kbatch.io/simulated-node=true`` (``NoSchedule``), so only pods that ask land on it::

    spec:
      nodeSelector: {kbatch.io/simulated-node: "true"}
      tolerations: [{key: kbatch.io/simulated-node, operator: Exists, effect: NoSchedule}]
    metadata:
      annotations:
        kbatch.io/simulate: '{"seconds": 0.5, "exitCode": 0, "message": "{\\"n\\": {index}}",
                              "failures": [{"indexes": "0-36", "generations": "1", "exitCode": 3}]}'

:func:`pod_request` gives those three pieces for a stage. The annotation (``Behaviour``, JSON, every
key optional) says how the pod's containers end: after ``seconds`` with ``exitCode`` and the
termination ``message`` (``{index}`` becomes the pod's logical index, ``{completion_index}`` its
Job-local one). The first of ``failures`` that matches overrides them: ``indexes`` (logical index
set, "0-36,40"), ``generations`` (the pod's ``kbatch.io/attempt`` label: which Airflow tries fail,
so a retry can succeed) and ``below_failures`` (only while the index's
``batch.kubernetes.io/job-index-failure-count`` is lower: an index that fails N times, then
succeeds, for ``backoffLimitPerIndex``). The logical index is the Job-local completion index
mapped through the pod's ``kbatch.io/index-map`` annotation (a resumed attempt), as the resume shim
computes ``KBATCH_INDEX``.

Status transitions are the kubelet's: a bound pod goes ``Pending`` to ``Running`` (containers
running, ``startedAt``) to ``Succeeded``/``Failed`` (containers terminated with ``exitCode``,
``reason`` ``Completed``/``Error``, ``message``, ``startedAt``/``finishedAt``), each one
``pods/status`` strategic-merge patch with the uid as precondition. A pod whose ``seconds`` is 0
goes from ``Pending`` to its end in one patch, as a kubelet reports a container that exited
before its status was synced. The main container (``kubectl.kubernetes.io/default-container``,
else the first) ends with the chosen code; the others with 0; init containers are reported
completed. ``restartPolicy: OnFailure`` restarts a failing container in place (``restartCount``
grows) until it succeeds or the pod is deleted. A deleted pod that has not ended is reported
``Failed`` (exit code 137, reason ``Error``: SIGKILL) and, once terminal, deleted with grace 0.
No logs (``pods/log`` gives an empty log; followed, it stays open until the containers end, as a
kubelet's does), no volumes, no environment: nothing runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_kbatch.devcluster.processnode.kubeapi import ApiError, Informer, KubeClient
from airflow_provider_kbatch.devcluster.processnode.nodeapi import NodeApi
from airflow_provider_kbatch.devcluster.processnode.podapi import PodApi, PodGone
from airflow_provider_kbatch.spec.intervals import IndexSet

log = logging.getLogger(__name__)

SIMULATED_LABEL = "kbatch.io/simulated-node"
SIMULATED_TAINT = {"key": SIMULATED_LABEL, "value": "true", "effect": "NoSchedule"}
BEHAVIOUR_ANNOTATION = "kbatch.io/simulate"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
FAILURE_COUNT = "batch.kubernetes.io/job-index-failure-count"
INDEX_MAP = "kbatch.io/index-map"
ATTEMPT_LABEL = "kbatch.io/attempt"
DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"
KILLED_EXIT_CODE = 137
# Simulated capacity: the scheduler's fit checks (cpu, memory, pods) never hold a pod back.
CAPACITY = {"cpu": "100000", "memory": "100000Gi", "pods": "1000000", "ephemeral-storage": "100000Gi"}


class BehaviourError(ValueError):
    """The ``kbatch.io/simulate`` annotation is not valid."""


@dataclass(frozen=True)
class Ending:
    """How one container run ends."""

    seconds: float = 0.0
    exit_code: int = 0
    message: str = ""


@dataclass(frozen=True)
class Failure:
    """A rule of ``failures``: where it applies, and how the run ends there."""

    ending: Ending
    indexes: IndexSet | None = None
    generations: IndexSet | None = None
    below_failures: int | None = None

    def applies(self, index: int | None, generation: int | None, failures: int) -> bool:
        if self.indexes is not None and (index is None or index not in self.indexes):
            return False
        if self.generations is not None and (generation is None or generation not in self.generations):
            return False
        return self.below_failures is None or failures < self.below_failures


@dataclass(frozen=True)
class Behaviour:
    """The parsed ``kbatch.io/simulate`` annotation."""

    default: Ending = Ending()
    failures: tuple[Failure, ...] = field(default_factory=tuple)

    def ending(self, index: int | None, generation: int | None, failures: int) -> Ending:
        for rule in self.failures:
            if rule.applies(index, generation, failures):
                return rule.ending
        return self.default


def _ending(data: Mapping[str, Any], base: Ending, where: str) -> Ending:
    seconds = data.get("seconds", base.seconds)
    code = data.get("exitCode", base.exit_code)
    message = data.get("message", base.message)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
        raise BehaviourError(f"{where}seconds must be a number >= 0, got {seconds!r}")
    if isinstance(code, bool) or not isinstance(code, int) or not 0 <= code <= 255:
        raise BehaviourError(f"{where}exitCode must be an int 0-255, got {code!r}")
    if not isinstance(message, str):
        raise BehaviourError(f"{where}message must be a string, got {message!r}")
    return Ending(float(seconds), code, message)


def _index_set(value: Any, where: str) -> IndexSet | None:
    if value is None:
        return None
    try:
        return IndexSet.parse(str(value))
    except ValueError as err:
        raise BehaviourError(f"{where}: {err}") from err


def parse_behaviour(text: str | None) -> Behaviour:
    """The behaviour an annotation value asks for (pure); none: exit 0 at once, no message."""
    if not text:
        return Behaviour()
    try:
        data = json.loads(text)
    except ValueError as err:
        raise BehaviourError(f"{BEHAVIOUR_ANNOTATION} is not JSON: {err}") from err
    if not isinstance(data, dict):
        raise BehaviourError(f"{BEHAVIOUR_ANNOTATION} must be a JSON object")
    default = _ending(data, Ending(), "")
    rules = []
    for n, rule in enumerate(data.get("failures") or ()):
        where = f"failures[{n}]."
        if not isinstance(rule, dict):
            raise BehaviourError(f"failures[{n}] must be an object")
        below = rule.get("below_failures")
        if below is not None and (isinstance(below, bool) or not isinstance(below, int) or below < 1):
            raise BehaviourError(f"{where}below_failures must be an int >= 1, got {below!r}")
        rules.append(
            Failure(
                ending=_ending(rule, Ending(default.seconds, 1, default.message), where),
                indexes=_index_set(rule.get("indexes"), where + "indexes"),
                generations=_index_set(rule.get("generations"), where + "generations"),
                below_failures=below,
            )
        )
    return Behaviour(default, tuple(rules))


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def pod_ending(pod: Mapping[str, Any]) -> Ending:
    """How ``pod``'s main container ends (pure): its behaviour at its logical index, Airflow try
    (generation) and the index's failure count; ``{index}`` substituted in the message."""
    meta = pod.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    behaviour = parse_behaviour(annotations.get(BEHAVIOUR_ANNOTATION))
    local = _int(annotations.get(COMPLETION_INDEX))
    index = local
    if local is not None and annotations.get(INDEX_MAP):
        index_map = IndexSet.parse(annotations[INDEX_MAP])
        index = index_map.nth(local) if local < len(index_map) else local
    generation = _int((meta.get("labels") or {}).get(ATTEMPT_LABEL))
    ending = behaviour.ending(index, generation, _int(annotations.get(FAILURE_COUNT)) or 0)
    message = ending.message.replace("{index}", str(index)).replace("{completion_index}", str(local))
    return Ending(ending.seconds, ending.exit_code, message)


def pod_request(behaviour: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a pod (template) needs to run on a simulated node: ``node_selector``,
    ``tolerations`` and ``annotations`` (``behaviour`` as the ``kbatch.io/simulate`` JSON)."""
    request: dict[str, Any] = {
        "node_selector": {SIMULATED_LABEL: "true"},
        "tolerations": [{"key": SIMULATED_LABEL, "operator": "Exists", "effect": "NoSchedule"}],
        "annotations": {},
    }
    if behaviour is not None:
        text = json.dumps(dict(behaviour), separators=(",", ":"))
        parse_behaviour(text)  # fail here, not on the node
        request["annotations"][BEHAVIOUR_ANNOTATION] = text
    return request


def _stamp(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _condition(kind: str, ok: bool, now: float, reason: str | None = None) -> dict[str, Any]:
    return {
        "type": kind,
        "status": "True" if ok else "False",
        "lastTransitionTime": _stamp(now),
        "reason": reason,
        "lastProbeTime": None,
    }


def status_body(
    pod: Mapping[str, Any],
    *,
    started: float,
    now: float,
    ending: Ending | None,
    restarts: int = 0,
    last: tuple[Ending, float, float] | None = None,
) -> dict[str, Any]:
    """The ``status`` a kubelet reports (pure): containers running since ``started`` while
    ``ending`` is None, else terminated at ``now`` with ``ending`` (main container)."""
    spec = pod.get("spec") or {}
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    containers = [c for c in spec.get("containers") or () if c.get("name")]
    main = annotations.get(DEFAULT_CONTAINER) or (containers[0]["name"] if containers else "")
    failed = ending is not None and ending.exit_code != 0
    phase = "Running" if ending is None else ("Failed" if failed else "Succeeded")

    def state(name: str) -> dict[str, Any]:
        if ending is None:
            return {"running": {"startedAt": _stamp(started)}}
        code = ending.exit_code if name == main else 0
        terminated: dict[str, Any] = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": _stamp(started),
            "finishedAt": _stamp(now),
            "containerID": f"simulated://{(pod.get('metadata') or {}).get('uid', '')}/{name}",
        }
        if name == main and ending.message:
            terminated["message"] = ending.message[:4096]
        return {"terminated": terminated}

    def last_state(name: str) -> dict[str, Any]:
        if last is None or name != main:
            return {}
        previous, since, until = last
        return {
            "terminated": {
                "exitCode": previous.exit_code,
                "reason": "Error",
                "startedAt": _stamp(since),
                "finishedAt": _stamp(until),
            }
        }

    running = ending is None
    statuses = [
        {
            "name": c["name"],
            "image": c.get("image") or "",
            "imageID": "",
            "restartCount": restarts if c["name"] == main else 0,
            "ready": running,
            "started": running,
            "state": state(c["name"]),
            "lastState": last_state(c["name"]),
        }
        for c in containers
    ]
    done_reason = "PodCompleted" if ending is not None else None
    body: dict[str, Any] = {
        "phase": phase,
        "startTime": _stamp(started),
        "hostIP": "127.0.0.1",
        "hostIPs": [{"ip": "127.0.0.1"}],
        "podIP": "127.0.0.1",
        "podIPs": [{"ip": "127.0.0.1"}],
        "conditions": [
            _condition("PodReadyToStartContainers", running, now),
            _condition("Initialized", True, now),
            _condition("ContainersReady", running, now, done_reason),
            _condition("Ready", running, now, done_reason),
        ],
        "containerStatuses": statuses,
    }
    init = [c for c in spec.get("initContainers") or () if c.get("name")]
    if init:
        body["initContainerStatuses"] = [
            {
                "name": c["name"],
                "image": c.get("image") or "",
                "imageID": "",
                "restartCount": 0,
                "ready": True,
                "started": False,
                "state": {
                    "terminated": {
                        "exitCode": 0,
                        "reason": "Completed",
                        "startedAt": _stamp(started),
                        "finishedAt": _stamp(started),
                    }
                },
                "lastState": {},
            }
            for c in init
        ]
    return body


def _terminal(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


class SimulatedPod:
    """One pod on a simulated node: its run (a task) and the deletion it answers."""

    def __init__(self, client: KubeClient, pod: dict[str, Any], limit: asyncio.Semaphore) -> None:
        self.api = PodApi(client, pod)
        self.terminal = _terminal(pod)
        try:
            self.ending = pod_ending(pod)
        except ValueError as err:  # BehaviourError, or a malformed index map
            log.warning("pod %s: %s; it fails with exit code 2", self.api.name, err)
            self.ending = Ending(0.0, 2, f"kbatch simulated node: {err}")
        self.pod = _slim(pod)
        self.limit = limit
        self.deleted = asyncio.Event()
        self.ended = asyncio.Event()  # its containers have ended (a followed log closes then)
        if self.terminal:
            self.ended.set()
        self.task: asyncio.Task[None] | None = None

    def observe(self, pod: dict[str, Any]) -> None:
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            self.deleted.set()

    async def _patch(self, status: dict[str, Any]) -> None:
        delay = 0.2
        while True:
            try:
                async with self.limit:
                    await self.api.patch_status(status)
                return
            except ApiError as err:
                log.warning("simulated pod %s: status update failed (%s); retrying", self.api.name, err)
                await asyncio.sleep(delay)
                delay = min(5.0, delay * 2)

    async def _sleep_or_deleted(self, seconds: float) -> bool:
        """Sleep ``seconds``; True when the pod was deleted meanwhile."""
        if seconds <= 0:
            return self.deleted.is_set()
        try:
            await asyncio.wait_for(self.deleted.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            return False
        return True

    async def run(self) -> None:
        try:
            with contextlib.suppress(PodGone):
                await self._run()
        finally:
            self.ended.set()

    async def _run(self) -> None:
        pod, ending = self.pod, self.ending
        if not self.terminal:
            started = time.time()
            restarts = 0
            last: tuple[Ending, float, float] | None = None
            restart = (pod.get("spec") or {}).get("restartPolicy") == "OnFailure"
            while True:
                if ending.seconds > 0 or restarts:
                    await self._patch(
                        status_body(
                            pod, started=started, now=started, ending=None, restarts=restarts, last=last
                        )
                    )
                killed = await self._sleep_or_deleted(ending.seconds)
                now = time.time()
                if killed:
                    ending = Ending(0.0, KILLED_EXIT_CODE, "")
                if restart and ending.exit_code != 0 and not killed:
                    last = (ending, started, now)
                    restarts += 1
                    if await self._sleep_or_deleted(min(1.0 * restarts, 10.0)):
                        ending = Ending(0.0, KILLED_EXIT_CODE, "")
                    else:
                        started = time.time()
                        continue
                await self._patch(
                    status_body(pod, started=started, now=now, ending=ending, restarts=restarts, last=last)
                )
                break
        self.ended.set()
        await self.deleted.wait()
        async with self.limit:
            await self.api.delete_now()


class SimulatedNodes:
    """The simulated Nodes of the process node: each registered (simulated label and taint, huge
    capacity), heart-beating, with an informer on its pods."""

    def __init__(
        self, client: KubeClient, names: list[str], port: int, version: str, *, writes: int = 32
    ) -> None:
        self.client = client
        self.nodes = [
            NodeApi(
                client,
                name,
                dict(CAPACITY),
                port,
                version,
                labels={SIMULATED_LABEL: "true"},
                taints=[SIMULATED_TAINT],
            )
            for name in names
        ]
        self.pods: dict[str, SimulatedPod] = {}
        self.names: dict[tuple[str, str], SimulatedPod] = {}  # by (namespace, name)
        self.limit = asyncio.Semaphore(writes)
        self._tasks: set[asyncio.Task[None]] = set()

    async def register(self) -> None:
        for node in self.nodes:
            await node.register()

    def informers(self) -> list[Any]:
        """The coroutines to run: heartbeats and pod informers."""
        out: list[Any] = []
        for node in self.nodes:
            out.append(node.heartbeat())
            informer = Informer(self.client, "/api/v1/pods", {"fieldSelector": f"spec.nodeName={node.name}"})
            out.append(informer.run(self._event))
        return out

    async def _event(self, kind: str, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        if kind == "DELETED":
            self.names.pop((meta.get("namespace", ""), meta.get("name", "")), None)
            sim = self.pods.pop(uid, None)
            if sim is not None and sim.task is not None:
                sim.task.cancel()  # its run's finally sets ``ended``: a followed log closes
            return
        sim = self.pods.get(uid)
        if sim is None:
            sim = self.pods[uid] = SimulatedPod(self.client, pod, self.limit)
            self.names[(meta.get("namespace", ""), meta.get("name", ""))] = sim
            sim.observe(pod)
            sim.task = asyncio.create_task(sim.run())
            self._tasks.add(sim.task)
            sim.task.add_done_callback(self._tasks.discard)
        else:
            sim.observe(pod)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for node in self.nodes:
            with contextlib.suppress(ApiError, asyncio.TimeoutError):
                await asyncio.wait_for(node.post_status(ready=False), timeout=3)


def _slim(pod: dict[str, Any]) -> dict[str, Any]:
    """What a simulated pod keeps of its object once its run started (memory at 100,000 pods)."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    keep = {DEFAULT_CONTAINER: (meta.get("annotations") or {}).get(DEFAULT_CONTAINER)}
    return {
        "metadata": {
            "uid": meta.get("uid"),
            "name": meta.get("name"),
            "annotations": {k: v for k, v in keep.items() if v},
        },
        "spec": {
            "containers": [
                {"name": c.get("name"), "image": c.get("image")} for c in spec.get("containers") or ()
            ],
            "initContainers": [
                {"name": c.get("name"), "image": c.get("image")} for c in spec.get("initContainers") or ()
            ],
            "restartPolicy": spec.get("restartPolicy"),
        },
        "status": {"phase": (pod.get("status") or {}).get("phase")},
    }
