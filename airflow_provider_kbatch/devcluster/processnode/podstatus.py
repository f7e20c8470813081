"""Container states, pod phase and pod conditions as the kubelet reports them. Pure.

Phase rules follow ``pkg/kubelet/kubelet_pods.go`` (``getPhase``): a failed init container fails
the pod under ``restartPolicy: Never``; a regular container waiting with a previous termination
counts as stopped; a pod the node terminated (deleted, deadline, shutdown) ends ``Succeeded`` only
when every container exited 0, else ``Failed``.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_kbatch.spec.times import parse_time

MAX_TERMINATION_MESSAGE = 4096  # kubecontainer.MaxContainerTerminationMessageLength
MAX_POD_TERMINATION_MESSAGES = 12 * 1024  # kubecontainer.MaxPodTerminationMessageLogLength
FALLBACK_LOG_LINES = 80  # kubecontainer.MaxContainerTerminationMessageLogLines
FALLBACK_LOG_BYTES = 2048  # kubecontainer.MaxContainerTerminationMessageLogLength


def rfc3339(ts: float) -> str:
    """Seconds precision, like ``metav1.Time``."""
    return datetime.datetime.fromtimestamp(int(ts), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> float:
    """Epoch seconds of a timestamp the API server wrote (``spec.times``, the one parser)."""
    return parse_time(text).timestamp()


@dataclass
class Terminated:
    exit_code: int
    reason: str
    started_at: float
    finished_at: float
    signal: int | None = None
    message: str = ""
    container_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "exitCode": self.exit_code,
            "reason": self.reason,
            "startedAt": rfc3339(self.started_at),
            "finishedAt": rfc3339(self.finished_at),
        }
        if self.signal:
            out["signal"] = self.signal
        if self.message:
            out["message"] = self.message
        if self.container_id:
            out["containerID"] = self.container_id
        return out


@dataclass
class ContainerState:
    """What the node knows about one container of a pod."""

    name: str
    image: str = ""
    init: bool = False
    sidecar: bool = False
    restart_count: int = 0
    waiting_reason: str = "ContainerCreating"
    waiting_message: str = ""
    running_since: float | None = None
    terminated: Terminated | None = None
    last_terminated: Terminated | None = None
    container_id: str = ""

    @property
    def running(self) -> bool:
        return self.running_since is not None and self.terminated is None

    @property
    def succeeded(self) -> bool:
        return self.terminated is not None and self.terminated.exit_code == 0

    def restarting(self, reason: str, message: str) -> None:
        """Move a terminated container back to waiting before its next attempt."""
        self.last_terminated = self.terminated
        self.terminated = None
        self.running_since = None
        self.waiting_reason = reason
        self.waiting_message = message

    def as_status(self) -> dict[str, Any]:
        state: dict[str, Any] = {"waiting": None, "running": None, "terminated": None}
        if self.terminated is not None:
            state["terminated"] = self.terminated.as_dict()
        elif self.running_since is not None:
            state["running"] = {"startedAt": rfc3339(self.running_since)}
        else:
            waiting = {"reason": self.waiting_reason}
            if self.waiting_message:
                waiting["message"] = self.waiting_message
            state["waiting"] = waiting
        last: dict[str, Any] = {"waiting": None, "running": None, "terminated": None}
        if self.last_terminated is not None:
            last["terminated"] = self.last_terminated.as_dict()
        status: dict[str, Any] = {
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "restartCount": self.restart_count,
            "ready": self.running,
            "started": self.running,
            "state": state,
            "lastState": last,
        }
        if self.container_id:
            status["containerID"] = self.container_id
        return status


def _initialized(container: ContainerState) -> bool:
    """An init container is done when it succeeded; a sidecar (restartPolicy Always) once started."""
    if container.sidecar:
        return container.running_since is not None or container.last_terminated is not None
    return container.succeeded


def pod_phase(
    restart_policy: str,
    init: Sequence[ContainerState],
    regular: Sequence[ContainerState],
    *,
    terminal: bool = False,
) -> str:
    """The pod phase (``getPhase``); ``terminal``: the node stopped the pod for good."""
    for container in init:
        if container.sidecar:
            continue
        if container.terminated is not None and not container.succeeded and restart_policy == "Never":
            return "Failed"
    init_done = all(_initialized(c) for c in init)
    if terminal:
        ran_all = init_done and all(c.terminated is not None for c in regular)
        return "Succeeded" if ran_all and all(c.succeeded for c in regular) else "Failed"
    if not init_done:
        return "Pending"
    waiting, running, stopped, succeeded = _count(regular)
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if restart_policy == "Always":
        return "Running"
    if stopped == succeeded:
        return "Succeeded"
    if restart_policy == "Never":
        return "Failed"
    return "Running"


def _count(regular: Sequence[ContainerState]) -> tuple[int, int, int, int]:
    """(waiting, running, stopped, succeeded); waiting after a termination counts as stopped."""
    waiting = running = stopped = succeeded = 0
    for container in regular:
        if container.running:
            running += 1
        elif container.terminated is not None:
            stopped += 1
            succeeded += container.succeeded
        elif container.last_terminated is not None:
            stopped += 1
        else:
            waiting += 1
    return waiting, running, stopped, succeeded


def _condition(kind: str, ok: bool, reason: str = "", message: str = "") -> dict[str, Any]:
    """A condition; ``reason``/``message`` are always present (``None`` clears them in a patch)."""
    return {
        "type": kind,
        "status": "True" if ok else "False",
        "reason": (reason or None) if not ok else None,
        "message": (message or None) if not ok else None,
    }


def pod_conditions(
    phase: str, init: Sequence[ContainerState], regular: Sequence[ContainerState], *, sandbox: bool
) -> list[dict[str, Any]]:
    """``PodReadyToStartContainers``, ``Initialized``, ``ContainersReady``, ``Ready``
    (``PodScheduled`` belongs to the scheduler, ``DisruptionTarget`` to the API server)."""
    conditions = [_condition("PodReadyToStartContainers", sandbox and phase not in ("Succeeded", "Failed"))]
    pending_init = [c.name for c in init if not _initialized(c)]
    regular_started = any(c.running_since is not None or c.last_terminated is not None for c in regular)
    initialized = _condition(
        "Initialized",
        not pending_init or phase == "Succeeded" or regular_started,
        "ContainersNotInitialized",
        f"containers with incomplete status: [{' '.join(pending_init)}]",
    )
    if phase == "Succeeded":
        initialized["reason"] = "PodCompleted"
    conditions.append(initialized)
    if phase in ("Succeeded", "Failed"):
        ready, reason, message = False, "PodCompleted" if phase == "Succeeded" else "PodFailed", ""
    else:
        unready = [c.name for c in [*init, *regular] if (c.sidecar or not c.init) and not c.running]
        ready = not unready
        reason = "ContainersNotReady"
        message = f"containers with unready status: [{' '.join(unready)}]"
    conditions.append(_condition("ContainersReady", ready, reason, message))
    conditions.append(_condition("Ready", ready, reason, message))
    return conditions


def stamp_conditions(
    new: Iterable[dict[str, Any]], previous: Mapping[str, Mapping[str, Any]], now: float
) -> list[dict[str, Any]]:
    """Carry ``lastTransitionTime`` over from ``previous`` while a condition's status holds."""
    out = []
    for cond in new:
        old = previous.get(cond["type"])
        stamped = dict(cond)
        if old is not None and old.get("status") == cond["status"] and old.get("lastTransitionTime"):
            stamped["lastTransitionTime"] = old["lastTransitionTime"]
        else:
            stamped["lastTransitionTime"] = rfc3339(now)
        stamped.setdefault("lastProbeTime", None)
        out.append(stamped)
    return out


def termination_message(
    file_tail: bytes, policy: str, exit_code: int, log_tail: str, *, limit: int = MAX_TERMINATION_MESSAGE
) -> str:
    """The kubelet's termination message: the last ``limit`` bytes of the file; with
    ``FallbackToLogsOnError`` and an empty file after a failure, the end of the log."""
    message = file_tail[-limit:].decode("utf-8", "replace") if limit > 0 else ""
    if not message and policy == "FallbackToLogsOnError" and exit_code != 0:
        lines = log_tail.splitlines(keepends=True)[-FALLBACK_LOG_LINES:]
        raw = "".join(lines).encode()[-min(FALLBACK_LOG_BYTES, limit) :]
        message = raw.decode("utf-8", "replace")
    return message


def message_budget(containers: int) -> int:
    """Per-container cap: 4 KiB, less when a pod has many containers (12 KiB per pod)."""
    if containers <= 0:
        return MAX_TERMINATION_MESSAGE
    return min(MAX_TERMINATION_MESSAGE, MAX_POD_TERMINATION_MESSAGES // containers)


def exit_reason(exit_code: int, *, oom: bool = False) -> str:
    if oom:
        return "OOMKilled"
    return "Completed" if exit_code == 0 else "Error"


def exit_code_of(returncode: int) -> tuple[int, int | None]:
    """(exitCode, signal) from ``Popen.returncode`` (negative: killed by a signal, 128 + n)."""
    if returncode < 0:
        return 128 - returncode, -returncode
    return returncode, None


@dataclass
class Backoff:
    """Container restart backoff: doubles from ``initial`` up to ``cap`` (the kubelet: 10 s, 5 min)."""

    initial: float = 10.0
    cap: float = 300.0
    _next: dict[str, float] = field(default_factory=dict)

    def next_delay(self, key: str) -> float:
        delay = self._next.get(key, self.initial)
        self._next[key] = min(delay * 2, self.cap)
        return delay


def should_restart(container: ContainerState, restart_policy: str) -> bool:
    """Whether a container that ended runs again: a sidecar always, an init container after a
    failure unless ``Never``, a regular one as ``restartPolicy`` says."""
    if container.sidecar:
        return True
    if container.terminated is None:
        return False
    failed = container.terminated.exit_code != 0
    if container.init:
        return failed and restart_policy != "Never"
    return restart_policy == "Always" or (restart_policy == "OnFailure" and failed)


def reported_states(status: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``state`` a pod ``status`` reports for each of its containers (init ones too), by name."""
    statuses = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    return {s["name"]: s.get("state") or {} for s in statuses}


def lost_container(reported: Mapping[str, Any], now: float) -> Terminated:
    """A container the node finds reported in ``reported`` (its last ``state``) after a restart of
    the node: a termination stays as reported; anything else was killed with the node."""
    done = reported.get("terminated")
    if done:
        return Terminated(
            int(done.get("exitCode", 0)),
            done.get("reason") or "",
            parse_rfc3339(done["startedAt"]) if done.get("startedAt") else 0,
            parse_rfc3339(done["finishedAt"]) if done.get("finishedAt") else now,
            message=done.get("message") or "",
        )
    started = (reported.get("running") or {}).get("startedAt")
    return Terminated(
        137,
        "Error",
        parse_rfc3339(started) if started else 0,
        now,
        message="the process node restarted; the container's processes were killed",
    )
