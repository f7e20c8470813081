"""waiter.wait_for_job driven by an in-memory hook, on an event loop with virtual time.

The fake hook's watches are async generators following a script (a Job dict is yielded, a number
sleeps that many seconds, an exception is raised). The loop's clock only moves when every task
waits (as kopf's looptime does), and the waiter gets the same clock: queue timeouts, progress
cadence and queue wait are exact, and no test really sleeps.
"""

from __future__ import annotations

import asyncio
import datetime
import selectors
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from kubernetes import client

from airflow_provider_kbatch.engine.waiter import (
    WaitResult,
    WaitSettings,
    suspended_seconds,
    wait_for_job,
)
from airflow_provider_kbatch.errors import JobDeleted, NotFound
from airflow_provider_kbatch.spec.intervals import IndexSet
from airflow_provider_kbatch.spec.names import CONTROLLER_UID_LABEL
from airflow_provider_kbatch.spec.names import JOB_COMPLETION_INDEX_KEY as JOB_INDEX_KEY
from tests.unit.hooks.fakes import to_dict

NS, NAME, UID = "batch", "kb-etl-ingest-0123456789-g1", "uid-1"


# --------------------------------------------------------------------------- virtual time


class _VirtualSelector:
    """Never blocks: when nothing is ready it advances the loop's clock to the next timer."""

    def __init__(self, loop: VirtualTimeLoop, real: selectors.BaseSelector) -> None:
        self._loop, self._real = loop, real

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = self._real.select(0)
        if not ready and timeout:
            self._loop.now += timeout
        elif not ready and timeout is None:
            raise RuntimeError("deadlock: every task waits and no timer is set")
        return ready

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        super().__init__()
        self.now = START
        self._selector = _VirtualSelector(self, self._selector)  # type: ignore[has-type]

    def time(self) -> float:
        return self.now


def run(make: Callable[[VirtualTimeLoop], Coroutine[Any, Any, Any]]) -> Any:
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(make(loop))
    finally:
        loop.close()


# --------------------------------------------------------------------------- the fake hook


Script = list[Any]  # dict: yield it; int/float: sleep; BaseException: raise it


class FakeHook:
    """``listed``: what ``list_pods`` returns (the pods the API server holds when asked);
    ``logs``: pod name -> its lines (or an exception ``read_pod_log`` raises; ``None`` blocks)."""

    def __init__(
        self,
        job_script: Script,
        pod_script: Script | None = None,
        logs: dict[str, Any] | None = None,
        listed: list[dict[str, Any]] | None = None,
    ) -> None:
        self.job_script, self.pod_script, self.logs = job_script, pod_script or [], logs or {}
        self.listed = listed or []
        self.calls: list[tuple[Any, ...]] = []
        self.closed: list[str] = []

    async def _play(self, script: Script, what: str) -> AsyncIterator[Any]:
        try:
            for step in script:
                if isinstance(step, int | float):
                    await asyncio.sleep(step)
                elif isinstance(step, BaseException):
                    raise step
                else:
                    yield step
            if what != "job-ends":
                await asyncio.Event().wait()  # a watch does not end by itself
        finally:
            self.closed.append(what)

    def watch_job(self, namespace: str, name: str, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        self.calls.append(("watch_job", namespace, name))
        return self._play(self.job_script, "job")

    def watch_pods(self, namespace: str, selector: str, **kwargs: Any) -> AsyncIterator[Any]:
        self.calls.append(("watch_pods", namespace, selector))
        return self._play(self.pod_script, "pods")

    async def stream_pod_log(self, namespace: str, pod: str, container: str | None = None, **kw: Any) -> Any:
        self.calls.append(("stream_pod_log", namespace, pod, container))
        for line in self.logs.get(pod, []):
            yield line

    async def list_pods(self, namespace: str, label_selector: str | None = None, **kw: Any) -> Any:
        self.calls.append(("list_pods", namespace, label_selector))
        return [p for p in self.listed if _matches(p, label_selector)]

    async def read_pod_log(
        self,
        namespace: str,
        pod: str,
        container: str | None = None,
        *,
        tail_lines: int | None = None,
        limit_bytes: int | None = None,
        **kw: Any,
    ) -> str:
        """Like the API server: the last ``tail_lines`` lines, then at most ``limit_bytes`` of them."""
        self.calls.append(("read_pod_log", namespace, pod, container, tail_lines, limit_bytes))
        lines = self.logs.get(pod, [])
        if lines is None:
            await asyncio.Event().wait()
        if isinstance(lines, BaseException):
            raise lines
        text = "".join(f"{line}\n" for line in lines[-tail_lines if tail_lines else 0 :])
        return text.encode()[:limit_bytes].decode() if limit_bytes else text


def _matches(obj: dict[str, Any], selector: str | None) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    pairs = [term.split("=", 1) for term in (selector or "").split(",") if term]
    return all(labels.get(k) == v for k, v in pairs)


class EndingHook(FakeHook):
    """A job watch that returns (no outcome): something the real hook never does."""

    def watch_job(self, namespace: str, name: str, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        return self._play(self.job_script, "job-ends")


class RecordingLog:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def _add(self, level: str, msg: str, *args: Any, **kwargs: Any) -> None:
        self.lines.append((level, msg % args if args else msg))

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._add("info", msg, *args)

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._add("warning", msg, *args)

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._add("debug", msg, *args)

    def exception(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._add("exception", msg, *args)

    def messages(self, level: str | None = None) -> list[str]:
        return [m for lv, m in self.lines if level is None or lv == level]

    def having(self, needle: str) -> list[str]:
        return [m for m in self.messages() if needle in m]


# --------------------------------------------------------------------------- Job and pod dicts


def job(
    *,
    suspend: bool = False,
    conditions: tuple[tuple[str, str], ...] = (),
    completions: int = 4,
    suspended_at: str | None = None,
    created: str | None = None,
    **status: Any,
) -> dict[str, Any]:
    """A Job as the API server sends it; ``conditions`` are ``(type, reason)`` pairs, all True.
    ``suspend`` adds the Suspended condition (with ``suspended_at`` as its lastTransitionTime)."""
    conds = [{"type": t, "status": "True", "reason": r, "message": f"{t} because {r}"} for t, r in conditions]
    if suspend and suspended_at != "no-condition":
        conds.append({"type": "Suspended", "status": "True", "reason": "JobSuspended"})
        if suspended_at is not None:
            conds[-1]["lastTransitionTime"] = suspended_at
    meta = {"name": NAME, "namespace": NS, "uid": UID}
    if created is not None:
        meta["creationTimestamp"] = created
    return {
        "metadata": meta,
        "spec": {"completions": completions, "completionMode": "Indexed", "suspend": suspend},
        "status": {"conditions": conds, **status},
    }


def pod(name: str, index: int, phase: str, containers: tuple[str, ...] = ("main",)) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"batch.kubernetes.io/job-completion-index": str(index)}},
        "spec": {"containers": [{"name": c} for c in containers]},
        "status": {"phase": phase},
    }


WALL = 1_800_000_000.0  # 2027-01-15T08:00:00Z: the wall clock when the loop's clock reads START
START = 1000.0


def stamp(seconds_before_start: float) -> str:
    """An API server timestamp (RFC 3339, whole seconds) that long before the wait starts."""
    moment = datetime.datetime.fromtimestamp(WALL - seconds_before_start, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def wait(hook: FakeHook, log: RecordingLog, **kwargs: Any) -> Callable[[VirtualTimeLoop], Any]:
    settings = kwargs.pop("settings", WaitSettings(progress_interval=3600, log_drain_seconds=1))

    def make(loop: VirtualTimeLoop) -> Any:
        def wall() -> float:
            return WALL + loop.time() - START

        return wait_for_job(hook, NS, NAME, settings=settings, log=log, clock=loop.time, wall=wall, **kwargs)

    return make


# --------------------------------------------------------------------------- tests


def test_queued_then_admitted_then_failure_target_then_failed() -> None:
    hook = FakeHook(
        [
            job(suspend=True),
            7,
            job(active=4),  # admitted after 7 s in the queue
            5,
            job(active=3, failed=2, conditions=(("FailureTarget", "BackoffLimitExceeded"),)),
            1,
            job(
                failed=2,
                conditions=(("FailureTarget", "BackoffLimitExceeded"), ("Failed", "BackoffLimitExceeded")),
            ),
        ]
    )
    log = RecordingLog()
    result: WaitResult = run(wait(hook, log))

    assert result.status == "finished"
    assert result.outcome is not None and result.outcome.finished and not result.outcome.succeeded
    assert result.outcome.reason == "BackoffLimitExceeded" and result.outcome.retryable
    assert result.queued_seconds == 7.0
    assert result.signals == ["FailureTarget"]
    assert log.messages("info")[:3] == [
        f"job {NAME} is queued (suspended), waiting for admission",
        f"job {NAME} admitted after 7.0s in the queue",
        f"job {NAME}: early signal FailureTarget (FailureTarget because BackoffLimitExceeded)",
    ]
    assert (
        log.messages()[-1]
        == f"job {NAME}: indexes 0/4 done, 0 failed, 0 running, 2 pod failures; failed (BackoffLimitExceeded)"
    )
    event = result.to_event(NS, NAME)
    assert event["status"] == "finished" and event["succeeded"] is False and event["uid"] == UID
    assert event["queued_seconds"] == 7.0 and event["reason"] == "BackoffLimitExceeded"
    assert hook.calls[:2] == [
        ("watch_job", NS, NAME),
        ("watch_pods", NS, f"batch.kubernetes.io/controller-uid={UID}"),
    ]
    assert sorted(hook.closed) == ["job", "pods"], "both watches are closed when the wait ends"


def test_success_criteria_met_is_an_early_signal_not_the_end() -> None:
    hook = FakeHook(
        [
            job(active=1, succeeded=3, completedIndexes="0-2"),
            2,
            job(
                succeeded=4,
                completedIndexes="0-3",
                conditions=(("SuccessCriteriaMet", "CompletionsReached"),),
            ),
            2,
            job(
                succeeded=4,
                completedIndexes="0-3",
                conditions=(("SuccessCriteriaMet", "CompletionsReached"), ("Complete", "CompletionsReached")),
            ),
        ]
    )

    async def waiting(loop: VirtualTimeLoop) -> tuple[WaitResult, float]:
        started = loop.time()
        result = await wait(hook, RecordingLog())(loop)
        return result, loop.time() - started

    result, took = run(waiting)
    assert result.status == "finished" and result.outcome is not None and result.outcome.succeeded
    assert result.signals == ["SuccessCriteriaMet"]
    assert took == pytest.approx(4.0), "not finished at SuccessCriteriaMet, but at Complete"
    assert result.queued_seconds == 0.0


def test_job_deleted_while_waiting() -> None:
    last = job(active=4)
    hook = FakeHook([last, 3, JobDeleted(NS, NAME, last)])
    log = RecordingLog()
    result = run(wait(hook, log))
    assert result.status == "deleted"
    assert result.job == last and result.outcome is not None and not result.outcome.finished
    event = result.to_event(NS, NAME)
    assert event["status"] == "deleted" and event["succeeded"] is False


def test_queue_timeout_with_the_injected_clock() -> None:
    hook = FakeHook([job(suspend=True)])  # nobody ever admits it
    log = RecordingLog()

    async def waiting(loop: VirtualTimeLoop) -> tuple[WaitResult, float]:
        started = loop.time()
        settings = WaitSettings(progress_interval=3600, queue_timeout=30)
        result = await wait(hook, log, settings=settings)(loop)
        return result, loop.time() - started

    result, took = run(waiting)
    assert result.status == "queue_timeout"
    assert 30 <= result.queued_seconds <= 31 and 30 <= took <= 31, "checked every second"
    assert log.messages("warning") == [f"job {NAME} still queued after 30s (queue_timeout)"]
    assert result.to_event(NS, NAME)["status"] == "queue_timeout"


def test_queue_timeout_counts_queue_time_only() -> None:
    """Admitted within the timeout, then running much longer than it: no queue timeout."""
    hook = FakeHook(
        [
            job(suspend=True),
            20,
            job(active=4),
            100,
            job(succeeded=4, completedIndexes="0-3", conditions=(("Complete", "CompletionsReached"),)),
        ]
    )
    settings = WaitSettings(progress_interval=3600, queue_timeout=30)
    result = run(wait(hook, RecordingLog(), settings=settings))
    assert result.status == "finished" and result.outcome.succeeded
    assert result.queued_seconds == 20.0


def test_queue_time_adds_up_over_several_suspensions() -> None:
    hook = FakeHook(
        [
            job(suspend=True),
            5,
            job(active=4),
            10,
            job(suspend=True),  # suspended again (e.g. preempted by Kueue)
            3,
            job(active=4),
            1,
            job(succeeded=4, completedIndexes="0-3", conditions=(("Complete", "CompletionsReached"),)),
        ]
    )
    log = RecordingLog()
    result = run(wait(hook, log))
    assert result.queued_seconds == 8.0
    assert log.having("admitted after") == [
        f"job {NAME} admitted after 5.0s in the queue",
        f"job {NAME} admitted after 3.0s in the queue",
    ]


def test_queue_time_counts_from_the_suspension_not_from_when_the_wait_began() -> None:
    """A trigger picked up late, or a worker that adopts a queued Job after a restart, still
    reports the whole queue wait (the Suspended condition's lastTransitionTime)."""
    hook = FakeHook(
        [
            job(suspend=True, suspended_at=stamp(40), created=stamp(41)),
            5,
            job(active=4),
            1,
            job(succeeded=4, completedIndexes="0-3", conditions=(("Complete", "CompletionsReached"),)),
        ]
    )
    log = RecordingLog()
    result = run(wait(hook, log))
    assert result.queued_seconds == 45.0
    assert log.having("admitted after") == [f"job {NAME} admitted after 45.0s in the queue"]


def test_queue_timeout_applies_to_the_whole_queue_wait() -> None:
    hook = FakeHook([job(suspend=True, suspended_at=stamp(100))])

    async def waiting(loop: VirtualTimeLoop) -> tuple[WaitResult, float]:
        settings = WaitSettings(progress_interval=3600, queue_timeout=30)
        result = await wait(hook, RecordingLog(), settings=settings)(loop)
        return result, loop.time() - START

    result, took = run(waiting)
    assert result.status == "queue_timeout" and took <= 1.0, "already queued longer than the timeout"
    assert 100 <= result.queued_seconds <= 101


@pytest.mark.parametrize(
    ("suspended", "expected"),
    [
        pytest.param(
            job(suspend=True, suspended_at="no-condition", created=stamp(10)), 10.0, id="created-suspended"
        ),
        pytest.param(
            job(suspend=True, suspended_at="no-condition", created=stamp(10), startTime=stamp(8)),
            0.0,
            id="ran-before-no-condition-yet",
        ),
        pytest.param(job(suspend=True, suspended_at="garbage", created=stamp(10)), 0.0, id="unparseable"),
        pytest.param(job(suspend=True, suspended_at=stamp(-30)), 0.0, id="clock-skew-future"),
        pytest.param(job(suspend=True, suspended_at="2027-01-15T07:59:50.250000Z"), 9.75, id="fractional"),
    ],
)
def test_suspended_seconds(suspended: dict[str, Any], expected: float) -> None:
    assert suspended_seconds(suspended, WALL) == pytest.approx(expected)


def test_progress_lines_at_a_steady_cadence() -> None:
    hook = FakeHook(
        [
            job(active=4),
            12,
            job(active=2, succeeded=2, completedIndexes="0-1"),
            23,
            job(succeeded=4, completedIndexes="0-3", conditions=(("Complete", "CompletionsReached"),)),
        ]
    )
    log = RecordingLog()
    run(wait(hook, log, settings=WaitSettings(progress_interval=10, log_drain_seconds=1)))
    progress = log.having(": indexes ")
    assert progress == [
        f"job {NAME}: indexes 0/4 done, 0 failed, 4 running",  # t=10
        f"job {NAME}: indexes 2/4 done, 0 failed, 2 running",  # t=20
        f"job {NAME}: indexes 2/4 done, 0 failed, 2 running",  # t=30
        f"job {NAME}: indexes 4/4 done, 0 failed, 0 running; complete",  # t=35, the final line
    ]


def test_pending_pods_are_not_counted_as_running() -> None:
    """status.active counts Pending pods too; the progress line separates them."""
    pods = [("ADDED", pod("p0", 0, "Pending")), ("ADDED", pod("p1", 1, "Running"))]
    hook = FakeHook(
        [
            job(active=2, completions=2),
            11,
            job(
                succeeded=2,
                completedIndexes="0-1",
                completions=2,
                conditions=(("Complete", "CompletionsReached"),),
            ),
        ],
        pods,
    )
    log = RecordingLog()
    run(wait(hook, log, settings=WaitSettings(progress_interval=10, stream_logs=False)))
    assert log.having(": indexes 0/2")[0] == f"job {NAME}: indexes 0/2 done, 0 failed, 1 running, 1 pending"


def test_logs_of_every_pod_prefixed_by_logical_index() -> None:
    pods = [
        ("ADDED", pod("p-0", 0, "Pending")),
        ("MODIFIED", pod("p-0", 0, "Running")),
        ("ADDED", pod("p-1", 1, "Succeeded", containers=("main", "sidecar"))),
    ]
    done = job(
        succeeded=2, completedIndexes="0-1", completions=2, conditions=(("Complete", "CompletionsReached"),)
    )
    hook = FakeHook(
        [job(active=2, completions=2), 1, done],
        pods,
        logs={"p-0": ["hello from 0", "bye"], "p-1": ["hello from 1"]},
    )
    log = RecordingLog()
    run(wait(hook, log, index_map=IndexSet.parse("2,5")))
    lines = [m for m in log.messages("info") if m.startswith("[index")]
    assert sorted(lines) == sorted(
        [
            "[index 2] hello from 0",
            "[index 2] bye",
            "[index 5][main] hello from 1",
            "[index 5][sidecar] hello from 1",
        ]
    )
    streamed = [c for c in hook.calls if c[0] == "stream_pod_log"]
    assert sorted(streamed) == [
        ("stream_pod_log", NS, "p-0", "main"),
        ("stream_pod_log", NS, "p-1", "main"),
        ("stream_pod_log", NS, "p-1", "sidecar"),
    ], "one stream per container, none for a pod still Pending"


def test_a_failing_watch_raises_its_error_and_leaves_no_task() -> None:
    hook = FakeHook([job(active=1), 2, ConnectionResetError("retries exhausted")])

    async def failing(loop: VirtualTimeLoop) -> None:
        with pytest.raises(ConnectionResetError, match="retries exhausted"):
            await wait(hook, RecordingLog())(loop)
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert others == [], f"tasks left behind: {others}"

    run(failing)
    assert "pods" in hook.closed


def test_a_watch_that_ends_without_outcome_is_an_error() -> None:
    hook = EndingHook([job(active=1)])
    with pytest.raises(RuntimeError, match="ended without an outcome"):
        run(wait(hook, RecordingLog()))


def test_already_finished_at_the_first_listing() -> None:
    done = job(succeeded=4, completedIndexes="0-3", conditions=(("Complete", "CompletionsReached"),))
    hook = FakeHook([done])

    async def waiting(loop: VirtualTimeLoop) -> tuple[WaitResult, float]:
        started = loop.time()
        result = await wait(hook, RecordingLog())(loop)
        return result, loop.time() - started

    result, took = run(waiting)
    assert result.status == "finished" and result.outcome.succeeded and took == 0.0


def test_cancellation_propagates_and_closes_the_watches() -> None:
    hook = FakeHook([job(active=4)], [("ADDED", pod("p-0", 0, "Running"))], logs={"p-0": ["x"]})

    async def cancelled(loop: VirtualTimeLoop) -> None:
        task = asyncio.ensure_future(wait(hook, RecordingLog())(loop))
        await asyncio.sleep(5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert others == [], f"tasks left behind: {others}"

    run(cancelled)
    assert sorted(hook.closed) == ["job", "pods"]


def test_settings_round_trip_and_ignore_unknown_keys() -> None:
    settings = WaitSettings(progress_interval=5, stream_logs=False, max_log_streams=2, queue_timeout=60)
    assert WaitSettings.from_dict(settings.to_dict()) == settings
    assert WaitSettings.from_dict({**settings.to_dict(), "from_the_future": 1}) == settings
    assert WaitSettings.from_dict(None) == WaitSettings()


class EventsHook(FakeHook):
    def __init__(self, *args: Any, events: list[dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.events = events

    async def list_events(self, namespace: str, field_selector: str | None = None) -> list[dict[str, Any]]:
        self.calls.append(("list_events", namespace, field_selector))
        return self.events


def test_a_pending_pod_is_explained_once_from_its_warning_events() -> None:
    pods = [("ADDED", pod("p0", 0, "Pending")), ("ADDED", pod("p1", 1, "Running"))]
    events = [
        {"type": "Normal", "reason": "Scheduled", "message": "ok", "lastTimestamp": "2027-01-15T07:59:00Z"},
        {"type": "Warning", "reason": "FailedScheduling", "lastTimestamp": "2027-01-15T07:59:30Z",
         "message": "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."},
    ]  # fmt: skip
    hook = EventsHook(
        [
            job(active=2, completions=2),
            25,
            job(
                succeeded=2,
                completedIndexes="0-1",
                completions=2,
                conditions=(("Complete", "CompletionsReached"),),
            ),
        ],
        pods,
        events=events,
    )
    log = RecordingLog()
    run(wait(hook, log, settings=WaitSettings(progress_interval=10, stream_logs=False)))
    explained = log.having("is pending")
    assert explained == [
        f"job {NAME}: pod p0 (index 0) is pending: FailedScheduling: 0/2 nodes are available: "
        "2 node(s) didn't match Pod's node affinity/selector."
    ]
    assert ("list_events", NS, "involvedObject.name=p0") in hook.calls


# --------------------------------------------------------------------------- logs no stream delivered


def k8s_pod(
    name: str,
    index: int,
    phase: str = "Succeeded",
    *,
    owner: str = UID,
    containers: tuple[str, ...] = ("main",),
    started: bool = True,
) -> dict[str, Any]:
    """A pod of the Job as the API server sends it (built from the real model): the Job
    controller's labels and its controller owner reference."""
    state = client.V1ContainerState(terminated=client.V1ContainerStateTerminated(exit_code=0))
    return to_dict(
        client.V1Pod(
            metadata=client.V1ObjectMeta(
                name=name,
                namespace=NS,
                labels={JOB_INDEX_KEY: str(index), CONTROLLER_UID_LABEL: owner, "job-name": NAME},
                owner_references=[
                    client.V1OwnerReference(
                        api_version="batch/v1", kind="Job", name=NAME, uid=owner, controller=True
                    )
                ],
            ),
            spec=client.V1PodSpec(
                restart_policy="Never",
                containers=[client.V1Container(name=c, image="python") for c in containers],
            ),
            status=client.V1PodStatus(
                phase=phase,
                container_statuses=[
                    client.V1ContainerStatus(
                        name=c, image="python", image_id="", ready=False, restart_count=0, state=state
                    )
                    for c in containers
                ]
                if started
                else None,
            ),
        )
    )


COMPLETE_3 = job(
    succeeded=3, completedIndexes="0-2", completions=3, conditions=(("Complete", "CompletionsReached"),)
)


def index_lines(log: RecordingLog) -> list[str]:
    return [m for m in log.messages("info") if m.startswith("[index")]


@pytest.mark.parametrize(
    ("index_map", "logical"),
    [pytest.param(None, [0, 1, 2], id="first-attempt"), pytest.param("3,5-6", [3, 5, 6], id="resumed")],
)
def test_a_job_finished_before_the_pod_watch_listed_still_logs_every_index(
    index_map: str | None, logical: list[int]
) -> None:
    """A real triggerer starts the trigger ~2 s after the deferral: a sub-second stage is finished
    at the first listing and the pod watch never reports a pod. Every index's log still reaches
    the task log, before the wait returns; a pod that only carries the selector is not read."""
    pods = [k8s_pod(f"p-{i}", i) for i in (2, 0, 1)]
    foreign = k8s_pod("impostor", 0, owner="another-uid")
    foreign["metadata"]["labels"][CONTROLLER_UID_LABEL] = UID  # a copied label is not ownership
    logs = {f"p-{i}": [f"hello from {i}", "bye"] for i in range(3)} | {"impostor": ["not ours"]}
    hook = FakeHook([COMPLETE_3], [30], logs=logs, listed=[*pods, foreign])
    log = RecordingLog()
    imap = IndexSet.parse(index_map) if index_map else None
    result = run(wait(hook, log, index_map=imap))

    assert result.status == "finished" and result.outcome is not None and result.outcome.succeeded
    assert index_lines(log) == [
        line for i in logical for line in (f"[index {i}] hello from {logical.index(i)}", f"[index {i}] bye")
    ], "every index, in index order, each pod's lines together"
    assert ("list_pods", NS, f"{CONTROLLER_UID_LABEL}={UID}") in hook.calls
    reads = [c for c in hook.calls if c[0] == "read_pod_log"]
    assert reads == [("read_pod_log", NS, f"p-{i}", "main", 200, 64 * 1024) for i in range(3)]
    assert log.having("6 lines of 3 container logs read after it finished")
    assert not log.having("not ours")
    assert log.messages()[-1].endswith("3/3 done, 0 failed, 0 running; complete"), "progress line last"


def test_streamed_logs_are_not_repeated_and_unreadable_pods_are_named_once() -> None:
    streamed = k8s_pod("p-0", 0, "Running")
    deleted = k8s_pod("p-4", 4, "Running")
    hook = FakeHook(
        [job(active=5, completions=5), 1, job(succeeded=4, failed=1, completions=5,
         completedIndexes="0-2,4", failedIndexes="3", conditions=(("Failed", "FailedIndexes"),))],
        [("ADDED", streamed), ("ADDED", deleted), ("DELETED", deleted)],
        logs={
            "p-0": ["streamed live"],
            "p-1": ["only read at the end"],
            "p-2": NotFound(404, "NotFound", 'pods "p-2" not found', []),
            "p-4": [],  # its stream delivered nothing before the pod went away
        },
        listed=[
            k8s_pod("p-0", 0),
            k8s_pod("p-1", 1, "Failed", containers=("main", "sidecar")),
            k8s_pod("p-2", 2),
            k8s_pod("p-3", 3, "Pending", started=False),
        ],
    )  # fmt: skip
    log = RecordingLog()
    run(wait(hook, log))

    assert index_lines(log) == [
        "[index 0] streamed live",
        "[index 1][main] only read at the end",
        "[index 1][sidecar] only read at the end",
    ]
    reads = sorted((c[2], c[3]) for c in hook.calls if c[0] == "read_pod_log")
    assert reads == [("p-1", "main"), ("p-1", "sidecar"), ("p-2", "main")], "p-0 was streamed: not read again"
    assert log.messages("warning") == [
        f"job {NAME}: the log of pod p-2 (index 2) cannot be read: the pod is gone",
        f"job {NAME}: the log of pod p-3 (index 3) cannot be read: it never started",
        f"job {NAME}: the log of pod p-4 (index 4) cannot be read: the pod was deleted",
    ]


def test_the_read_after_the_end_is_bounded_per_container_and_in_total() -> None:
    long = [f"line {n:04d} " + "x" * 400 for n in range(1000)]  # 200 lines are more than 64 KiB
    pods = [k8s_pod(f"p-{i:02d}", i) for i in range(40)]
    hook = FakeHook(
        [job(succeeded=40, completions=40, completedIndexes="0-39", conditions=(("Complete", "x"),))],
        logs={p["metadata"]["name"]: long for p in pods} | {"p-00": ["short", "log"]},
        listed=pods,
    )
    log = RecordingLog()
    run(wait(hook, log))

    reads = [c for c in hook.calls if c[0] == "read_pod_log"]
    assert all(c[4] == 200 and c[5] == 64 * 1024 for c in reads)
    # 2 MiB in all: the short log, then 31 more capped at 64 KiB (a read reserves 64 KiB)
    assert len(reads) == 32
    assert [m for m in index_lines(log) if m.startswith("[index 0] ")] == ["[index 0] short", "[index 0] log"]
    shown = [m for m in index_lines(log) if m.startswith("[index 1] ")]
    assert shown[0].startswith("[index 1] (the last ") and "kubectl logs -n batch p-01 -c main" in shown[0]
    assert sum(len(m) + 1 for m in index_lines(log)) < 2 * 1024 * 1024 + 32 * 200
    assert log.having("8 more container logs not read (2048 KiB read after the job finished is the limit)")


def test_a_log_read_that_hangs_does_not_hold_the_event() -> None:
    hook = FakeHook([COMPLETE_3], logs={"p-0": ["a"], "p-1": None, "p-2": ["c"]}, listed=[
        k8s_pod(f"p-{i}", i) for i in range(3)])  # fmt: skip

    async def waiting(loop: VirtualTimeLoop) -> float:
        await wait(hook, log)(loop)
        return loop.time() - START

    log = RecordingLog()
    took = run(waiting)
    assert took == pytest.approx(30.0), "the read after the end is bounded in time"
    assert index_lines(log) == ["[index 0] a", "[index 2] c"]
    assert log.messages("warning") == [
        f"job {NAME}: the log of pod p-1 (index 1) cannot be read: not read within 30s"
    ]


@pytest.mark.parametrize(
    "case",
    ["stream_logs-off", "deleted"],
)
def test_no_read_after_the_end_without_streaming_or_without_an_outcome(case: str) -> None:
    last = job(active=3, completions=3)
    script = [COMPLETE_3] if case == "stream_logs-off" else [last, 1, JobDeleted(NS, NAME, last)]
    hook = FakeHook(script, logs={"p-0": ["x"]}, listed=[k8s_pod("p-0", 0)])
    settings = WaitSettings(progress_interval=3600, stream_logs=case != "stream_logs-off")
    run(wait(hook, RecordingLog(), settings=settings))
    assert not [c for c in hook.calls if c[0] in ("list_pods", "read_pod_log")]


class QueuedStreamHook(FakeHook):
    """``hog``'s live stream ends 0.5 s after the Job finished; ``queued``'s, once it gets the
    slot, never ends (a stream the wait must not wait for)."""

    async def stream_pod_log(self, namespace: str, pod: str, container: str | None = None, **kw: Any) -> Any:
        self.calls.append(("stream_pod_log", namespace, pod, container))
        await asyncio.sleep(1.5 if pod == "hog" else 10**6)
        for line in self.logs.get(pod, []):
            yield line


def test_the_end_does_not_wait_for_a_stream_still_queued_for_a_slot() -> None:
    """A triggerer that holds 1,000 stages follows only ``process_log_streams`` logs: a stage
    whose stream still waits for a slot when its Job finishes must not wait ``log_drain_seconds``
    for it (p99 7.5 s at 1,000 stages); the final read takes that pod's log."""
    hook = QueuedStreamHook(
        [job(active=2, completions=2), 1,
         job(succeeded=2, completions=2, completedIndexes="0-1", conditions=(("Complete", "CompletionsReached"),))],
        [("ADDED", k8s_pod("hog", 0, "Running")), ("ADDED", k8s_pod("queued", 1, "Running"))],
        logs={"hog": ["hog's line"], "queued": ["queued's line"]},
        listed=[k8s_pod("hog", 0), k8s_pod("queued", 1)],
    )  # fmt: skip
    log = RecordingLog()
    settings = WaitSettings(
        progress_interval=3600, log_drain_seconds=5, max_log_streams=1, process_log_streams=1
    )

    def make(loop: VirtualTimeLoop) -> Any:
        async def timed() -> float:
            started = loop.time()
            await wait_for_job(hook, NS, NAME, settings=settings, log=log, clock=loop.time)
            return loop.time() - started

        return timed()

    assert run(make) == pytest.approx(1.5, abs=0.1), "waited for the queued stream"
    assert sorted(index_lines(log)) == ["[index 0] hog's line", "[index 1] queued's line"]
    assert [c[2] for c in hook.calls if c[0] == "read_pod_log"] == ["queued"]  # read, not streamed
