"""What the node reports for one pod, and the patches that carry it (the kubelet's status manager).

``PodStatus`` holds what the pod worker decided (a final phase, a reason and message, extra
conditions, the start time, whether the sandbox is up) beside the container states, renders the
``status`` the kubelet would (``podstatus``: phase, conditions with their transition times,
container statuses) and sends it to the ``pods/status`` subresource as a strategic merge patch
(conditions merge by type, so the scheduler's ``PodScheduled`` and the API server's
``DisruptionTarget`` stay) carrying ``metadata.uid`` (a pod recreated under the same name is never
patched by a stale worker). Patches coalesce: while one is in flight, later changes are sent
together, and a failed patch is retried (``STATUS_POLICY``'s backoff: 0.2 s doubling to 5 s) until it
lands or the pod is gone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from airflow_provider_kbatch.devcluster.processnode.kubeapi import ApiError, RetryForever
from airflow_provider_kbatch.devcluster.processnode.podapi import PodApi, PodGone
from airflow_provider_kbatch.devcluster.processnode.podstatus import (
    ContainerState,
    pod_conditions,
    pod_phase,
    rfc3339,
    stamp_conditions,
)

log = logging.getLogger(__name__)

POD_IP = "127.0.0.1"
STATUS_POLICY = RetryForever(base_delay=0.2, max_delay=5.0, jitter=0.0)


class PodStatus:
    def __init__(
        self,
        api: PodApi,
        pod: dict[str, Any],
        restart_policy: str,
        init_states: list[ContainerState],
        states: list[ContainerState],
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.api = api
        self.generation = pod["metadata"].get("generation")  # of the latest pod object seen
        self.key = f"{api.namespace}/{api.name}"
        self.restart_policy = restart_policy
        self.init_states = init_states
        self.states = states
        self.final_phase: str | None = None
        self.reason: str | None = None
        self.message: str | None = None
        self.extra_conditions: list[dict[str, Any]] = []
        self.start_time: float | None = None
        self.sandbox = False
        self.gone = False  # the pod object is gone from the API: nothing more to report
        self.changed = asyncio.Event()  # set (and replaced) at every change
        self._sleep = sleep
        self._version = 0
        self._synced = 0
        self._task: asyncio.Task[None] | None = None
        self._conditions_sent = {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []}

    def phase(self) -> str:
        if self.final_phase is not None:
            return self.final_phase
        return pod_phase(self.restart_policy, self.init_states, self.states)

    def body(self, now: float) -> dict[str, Any]:
        phase = self.phase()
        conditions = pod_conditions(phase, self.init_states, self.states, sandbox=self.sandbox)
        generation = self.generation
        stamped = stamp_conditions(list(conditions) + self.extra_conditions, self._conditions_sent, now)
        if generation is not None:
            for cond in stamped:
                cond["observedGeneration"] = generation
        self._conditions_sent.update({c["type"]: c for c in stamped})
        body: dict[str, Any] = {
            "phase": phase,
            "conditions": stamped,
            "hostIP": POD_IP,
            "hostIPs": [{"ip": POD_IP}],
            "podIP": POD_IP,
            "podIPs": [{"ip": POD_IP}],
            "containerStatuses": [s.as_status() for s in self.states],
        }
        if generation is not None:
            body["observedGeneration"] = generation
        if self.start_time is not None:
            body["startTime"] = rfc3339(self.start_time)
        if self.init_states:
            body["initContainerStatuses"] = [s.as_status() for s in self.init_states]
        if self.reason:
            body["reason"] = self.reason
        if self.message:
            body["message"] = self.message
        return body

    def sync(self) -> None:
        """Schedule a status update (coalesced with any in flight)."""
        self._version += 1
        self.changed.set()
        self.changed = asyncio.Event()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._send())

    async def flush(self) -> None:
        """Return once the latest status reached the API server (or the pod is gone)."""
        while self._synced < self._version and not self.gone:
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._send())
            await asyncio.shield(self._task)

    async def _send(self) -> None:
        failures = 0
        while self._synced < self._version and not self.gone:
            version = self._version
            try:
                await self.api.patch_status(self.body(time.time()))
                self._synced = version
                failures = 0
            except PodGone:
                log.info("pod %s is gone; no more status updates", self.key)
                self.gone = True
            except ApiError as err:
                failures += 1
                log.warning("pod %s: status update failed (%s); retrying", self.key, err)
                await self._sleep(STATUS_POLICY.backoff(failures))
