"""The wait at scale: pods read a page at a time and kept slimmed, bounded final reads and warnings,
no Succeeded pod held, a bounded backlog of log streams (engine/podpages.py, engine/waiter.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from airflow_provider_kbatch.engine.podlogs import MAX_NAMED, containers_of
from airflow_provider_kbatch.engine.podpages import pages
from airflow_provider_kbatch.engine.waiter import STREAM_BACKLOG, WaitSettings, _Watch
from airflow_provider_kbatch.hooks.shared_watch import label_selector_matcher
from airflow_provider_kbatch.spec.names import CONTROLLER_UID_LABEL, JOB_COMPLETION_INDEX_KEY
from airflow_provider_kbatch.status import creation_order, pod_index, pod_results, slim_pod, watched_pod
from tests.unit.glue.test_waiter import NAME, NS, UID, FakeHook, RecordingLog, job, k8s_pod, run, wait


class PagedHook(FakeHook):
    """Serves ``listed`` in pages of ``size`` through ``pod_pages``; ``list_pods`` must not be used."""

    size = 100

    async def pod_pages(
        self, namespace: str, label_selector: str | None = None, **kw: Any
    ) -> AsyncIterator[Any]:
        self.calls.append(("pod_pages", namespace, label_selector))
        for start in range(0, len(self.listed), self.size):
            yield self.listed[start : start + self.size]

    async def list_pods(self, namespace: str, label_selector: str | None = None, **kw: Any) -> Any:
        raise AssertionError("a Job's pods are read a page at a time")


def finished(n: int) -> dict[str, Any]:
    return job(succeeded=n, completions=n, completedIndexes=f"0-{n - 1}", conditions=(("Complete", "x"),))


def test_the_final_read_pages_and_reads_at_most_max_pods_lowest_indexes() -> None:
    n = 1010
    pods = [k8s_pod(f"p-{i:04d}", i) for i in reversed(range(n))]  # pages not in index order
    hook = PagedHook([finished(n)], logs={p["metadata"]["name"]: ["x"] for p in pods}, listed=pods)
    log = RecordingLog()
    run(wait(hook, log))

    assert ("pod_pages", NS, f"{CONTROLLER_UID_LABEL}={UID}") in hook.calls
    reads = [c[2] for c in hook.calls if c[0] == "read_pod_log"]
    assert sorted(reads) == [f"p-{i:04d}" for i in range(1000)], "the 1,000 lowest indexes"
    assert log.having("10 more container logs not read")


def test_unreadable_pods_are_named_up_to_a_limit_then_counted() -> None:
    n = MAX_NAMED + 10
    pods = [k8s_pod(f"p-{i:02d}", i, "Pending", started=False) for i in range(n)]
    hook = PagedHook([finished(n)], listed=pods)
    log = RecordingLog()
    run(wait(hook, log))

    warnings = log.messages("warning")
    assert len(warnings) == MAX_NAMED + 1
    assert warnings[0] == f"job {NAME}: the log of pod p-00 (index 0) cannot be read: it never started"
    assert warnings[-1] == f"job {NAME}: the logs of 10 more pods cannot be read"


def test_the_wait_keeps_no_succeeded_pod_and_a_bounded_stream_backlog() -> None:
    class Blocking(FakeHook):
        async def stream_pod_log(
            self, namespace: str, pod: str, container: str | None = None, **kw: Any
        ) -> Any:
            await asyncio.Event().wait()
            yield ""

    async def scenario() -> tuple[int, int, int, set[str], set[str]]:
        settings = WaitSettings(max_log_streams=2)
        watch = _Watch(Blocking([]), NS, NAME, None, settings, RecordingLog(), lambda: 0.0)
        for i in range(100):
            watch.observe_pod("ADDED", k8s_pod(f"ok-{i}", i))
        watch.observe_pod("ADDED", k8s_pod("bad", 100, "Failed"))
        watch.observe_pod("ADDED", k8s_pod("live", 101, "Running"))
        streams = len(watch.streams)
        tasks = list(watch.streams.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0)
        return streams, watch.succeeded_seen, len(watch.streams), set(watch.seen), set(watch.pods)

    streams, succeeded, left, seen, pods = run(lambda loop: scenario())
    assert streams == STREAM_BACKLOG * 2, "at most 4 x max_log_streams streams wait for a slot"
    assert left == 0, "a finished stream leaves the table"
    assert succeeded == 100 and seen == {"bad", "live"} and pods == {"bad", "live"}


def test_slim_pod_keeps_what_readers_need() -> None:
    full = k8s_pod("p", 3, "Failed")
    full["metadata"]["managedFields"] = [{"manager": "kube-controller-manager"}]
    full["spec"]["containers"][0]["env"] = [{"name": "A", "value": "x" * 1000}]
    slim = slim_pod(full)
    assert slim["status"] == full["status"]
    assert slim["metadata"]["labels"] == full["metadata"]["labels"]
    assert slim["metadata"]["ownerReferences"] == full["metadata"]["ownerReferences"]
    assert "managedFields" not in slim["metadata"]
    assert slim["spec"]["containers"] == [
        {"name": "main", "image": full["spec"]["containers"][0].get("image")}
    ]


def test_a_watched_succeeded_pod_keeps_what_the_waits_read_and_little_else() -> None:
    """The pod watch of a 100,000-index stage holds every completed index's pod until the pod
    garbage collector deletes it (12,500 by default): of a Succeeded pod it keeps its result,
    index, controller uid, creation order and containers, not its conditions, IPs or labels."""
    full = _with_result(k8s_pod("p", 7), '{"rows": 12}', "2026-01-01T00:00:03Z")
    full["metadata"]["labels"].update({"job-name": "j", "kbatch.io/dag-id": "etl"})
    full["metadata"]["resourceVersion"] = "42"
    full["metadata"]["annotations"] = {"kbatch.io/identity": "x" * 300, JOB_COMPLETION_INDEX_KEY: "7"}
    full["status"]["conditions"] = [{"type": "Ready", "status": "False", "reason": "PodCompleted"}] * 5
    full["status"]["containerStatuses"][0]["state"]["terminated"]["containerID"] = "kbatch://" + "c" * 64
    kept = watched_pod(full)

    assert pod_results([kept]) == pod_results([full]) == {7: {"rows": 12}}
    assert pod_index(kept) == 7 and creation_order(kept) == creation_order(full)
    assert containers_of(kept) == containers_of(full) == ["main"]
    selects = label_selector_matcher(f"{CONTROLLER_UID_LABEL}={UID}")
    assert selects is not None and selects(kept)
    assert kept["metadata"]["resourceVersion"] == full["metadata"]["resourceVersion"]  # watch diffs
    assert "conditions" not in kept["status"] and "job-name" not in kept["metadata"]["labels"]
    assert len(json.dumps(kept)) * 2 < len(json.dumps(slim_pod(full)))
    # a pod still running or failed is kept as slim_pod keeps it: progress needs its status
    assert watched_pod(k8s_pod("f", 1, "Failed")) == slim_pod(k8s_pod("f", 1, "Failed"))


def test_pages_falls_back_to_one_list_for_hooks_without_pod_pages() -> None:
    class Plain:
        def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
            return [{"metadata": {"name": "a"}}]

    assert list(pages(Plain(), NS, "x=y")) == [[{"metadata": {"name": "a"}}]]


def _with_result(pod: dict[str, Any], value: str, created: str) -> dict[str, Any]:
    pod["metadata"]["creationTimestamp"] = created
    pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"] = value
    return pod


def test_the_wait_keeps_the_results_of_succeeded_pods_it_sees_deleted_and_only_those() -> None:
    async def scenario() -> dict[int, Any]:
        watch = _Watch(
            FakeHook([]), NS, NAME, None, WaitSettings(stream_logs=False), RecordingLog(), lambda: 0.0
        )
        watch.observe_pod(
            "ADDED", _with_result(k8s_pod("a", 0), '{"v": "kept in the pod"}', "2026-01-01T00:00:00Z")
        )
        watch.observe_pod("DELETED", _with_result(k8s_pod("b", 1), '{"v": "b"}', "2026-01-01T00:00:00Z"))
        # two pods of index 2 deleted: the last created wins, whatever the order of the events
        watch.observe_pod("DELETED", _with_result(k8s_pod("c2", 2), '{"v": "newer"}', "2026-01-01T00:00:05Z"))
        watch.observe_pod("DELETED", _with_result(k8s_pod("c1", 2), '{"v": "older"}', "2026-01-01T00:00:01Z"))
        watch.observe_pod(
            "DELETED", _with_result(k8s_pod("d", 3, "Failed"), '{"v": "failed"}', "2026-01-01T00:00:00Z")
        )
        watch.observe_pod("DELETED", _with_result(k8s_pod("e", 4), "not json", "2026-01-01T00:00:00Z"))
        # no Succeeded pod is held, deleted or not (the pod garbage collector deletes 87,500 of a
        # 100,000-index stage): only the failed one, for the progress lines
        assert set(watch.seen) == {"d"} and watch.pods == {}
        return {i: value for i, (_, value) in watch.rescued.items()}

    assert run(lambda loop: scenario()) == {1: {"v": "b"}, 2: {"v": "newer"}}


def test_a_deleted_succeeded_pod_whose_log_was_not_read_is_remembered_by_name_only() -> None:
    async def scenario() -> dict[str, Any]:
        watch = _Watch(FakeHook([]), NS, NAME, None, WaitSettings(), RecordingLog(), lambda: 0.0)
        watch.streamed.add(("streamed", "main"))
        for name in ("streamed", "unread"):
            watch.observe_pod("DELETED", _with_result(k8s_pod(name, 1), '{"v": 1}', "2026-01-01T00:00:00Z"))
        return watch.seen

    seen = run(lambda loop: scenario())
    assert list(seen) == ["unread"]  # the final log read names it: "the pod was deleted"
    assert seen["unread"]["status"] == {"phase": "Succeeded"}
    assert seen["unread"]["spec"]["containers"] == [{"name": "main", "image": "python"}]


class Keeper:
    """A ``keep=`` for the wait: records every call; fails the calls whose numbers are in ``fail``."""

    def __init__(self, fail: tuple[int, ...] = ()) -> None:
        self.calls: list[tuple[float, dict[int, Any]]] = []
        self.fail = fail
        self.loop: Any = None

    async def __call__(self, job: Any, results: Any) -> bool:
        self.calls.append((self.loop.time(), dict(results)))
        await asyncio.sleep(0.1)  # a store takes a while: events keep coming meanwhile
        return len(self.calls) not in self.fail


def _deleting(n: int, every: float) -> list[Any]:
    """A pod watch that reports pod i Succeeded and deleted at ``every * (i + 0.5)`` seconds."""
    script: list[Any] = []
    for i in range(n):
        pod = _with_result(k8s_pod(f"p-{i}", i), f'{{"i": {i}}}', "2026-01-01T00:00:00Z")
        script += [every / 2 if i == 0 else every, ("MODIFIED", pod), ("DELETED", pod)]
    return script


def test_the_wait_stores_the_results_of_deleted_pods_with_every_progress_line_and_forgets_them() -> None:
    """A wait that stops early (a triggerer restart) must not lose what it rescued before: it
    stores the rescued results every progress interval, keeps in memory only what it has not
    stored yet, and stores the rest before it returns."""
    keeper = Keeper()
    hook = FakeHook([job(completions=6), 5.8, finished(6)], _deleting(6, 1.0))

    def make(loop: Any) -> Any:
        keeper.loop = loop
        settings = WaitSettings(progress_interval=2, stream_logs=False, log_drain_seconds=1)
        return wait(hook, RecordingLog(), settings=settings, keep=keeper)(loop)

    result = run(make)

    stored = [results for _, results in keeper.calls]
    assert [sorted(r) for r in stored] == [[0, 1], [2, 3], [4, 5]], keeper.calls
    start = keeper.calls[0][0] - 2
    # with the progress lines at 2 and 4 s, then once the Job finished at 5.8 s
    assert [round(t - start, 1) for t, _ in keeper.calls] == [2.0, 4.1, 5.8]
    assert {i: r for batch in stored for i, r in batch.items()} == {i: {"i": i} for i in range(6)}
    assert result.rescued == {} and result.rescued_kept == 6


def test_results_a_store_failed_to_keep_are_offered_again_and_returned_if_never_stored() -> None:
    keeper = Keeper(fail=(1, 3))

    def make(loop: Any) -> Any:
        keeper.loop = loop
        hook = FakeHook([job(completions=5), 4.8, finished(5)], _deleting(5, 1.0))
        settings = WaitSettings(progress_interval=2, stream_logs=False, log_drain_seconds=1)
        return wait(hook, RecordingLog(), settings=settings, keep=keeper)(loop)

    result = run(make)

    assert [sorted(r) for _, r in keeper.calls] == [[0, 1], [0, 1, 2, 3], [4]], keeper.calls
    assert result.rescued == {4: {"i": 4}} and result.rescued_kept == 4  # the last store failed too


def test_without_keep_the_wait_returns_every_rescued_result() -> None:
    hook = FakeHook([job(completions=3), 3.5, finished(3)], _deleting(3, 1.0))
    settings = WaitSettings(progress_interval=1, stream_logs=False, log_drain_seconds=1)
    result = run(wait(hook, RecordingLog(), settings=settings))
    assert result.rescued == {i: {"i": i} for i in range(3)} and result.rescued_kept == 0
