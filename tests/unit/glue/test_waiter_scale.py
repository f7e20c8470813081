"""The wait at scale: pods read a page at a time and kept slimmed, bounded final reads and warnings,
no Succeeded pod held, a bounded backlog of log streams (engine/podpages.py, engine/waiter.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow_provider_kbatch.engine.podlogs import MAX_NAMED
from airflow_provider_kbatch.engine.podpages import pages, slim_pod
from airflow_provider_kbatch.engine.waiter import STREAM_BACKLOG, WaitSettings, _Watch
from airflow_provider_kbatch.spec.names import CONTROLLER_UID_LABEL
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
        return {i: value for i, (_, value) in watch.rescued.items()}

    assert run(lambda loop: scenario()) == {1: {"v": "b"}, 2: {"v": "newer"}}
