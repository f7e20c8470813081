from __future__ import annotations

import asyncio
import signal
import ssl
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from airflow_provider_kbatch.devcluster import faults
from airflow_provider_kbatch.devcluster.ports import free_port
from airflow_provider_kbatch.devcluster.processnode.containerlogs import LogWriter, log_path
from airflow_provider_kbatch.devcluster.processnode.server import (
    ControlServer,
    KubeletServer,
    ensure_serving_cert,
)


class FakeWorker:
    def __init__(self, pod_dir: Path) -> None:
        self.dir = pod_dir
        self.writers: dict[str, LogWriter] = {}
        self.procs: dict[str, Any] = {}
        self.killed: list[tuple[Any, ...]] = []

    def container_names(self) -> list[str]:
        return ["c"]

    def kill(self, container: str | None, sig: int | None, exit_code: int | None) -> dict[str, Any]:
        if container not in (None, "c"):
            raise LookupError(f"container {container} is not running")
        self.killed.append((container, sig, exit_code))
        return {"container": "c", "pid": 42, "signal": sig, "exit_code": exit_code}


class FakeRegistry:
    def __init__(self, worker: FakeWorker) -> None:
        self.worker = worker

    def find(self, namespace: str, name: str) -> Any:
        return self.worker if (namespace, name) == ("ns", "p") else None

    def running(self) -> list[dict[str, Any]]:
        return [{"namespace": "ns", "pod": "p", "container": "c", "pid": 42}]


@pytest.fixture
def worker(tmp_path: Path) -> FakeWorker:
    pod_dir = tmp_path / "pods" / "ns_p_uid"
    pod_dir.mkdir(parents=True)
    return FakeWorker(pod_dir)


async def test_container_logs_endpoint_tail_limit_and_follow(tmp_path: Path, worker: FakeWorker) -> None:
    writer = LogWriter(log_path(worker.dir, "c"))
    writer.write("stdout", b"one\ntwo\nthree\n")
    worker.writers["c"] = writer
    port = free_port()
    server = KubeletServer(
        FakeRegistry(worker), tmp_path / "pods", port, ensure_serving_cert(tmp_path / "cert", [])
    )  # type: ignore[arg-type]
    await server.start()
    base = f"https://127.0.0.1:{port}/containerLogs/ns/p/c"
    context = ssl.create_default_context(cafile=str(tmp_path / "cert" / "kubelet.crt"))
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http:
            async with http.get(base, params={"tailLines": "2"}) as r:
                assert await r.text() == "two\nthree\n"
            async with http.get(base, params={"limitBytes": "5"}) as r:
                assert await r.text() == "one\nt"
            async with http.get(f"https://127.0.0.1:{port}/containerLogs/ns/other/c") as r:
                assert r.status == 404
            async with http.get(base, params={"previous": "true"}) as r:
                assert r.status == 400 and "previous terminated container" in await r.text()

            async def follow() -> str:
                async with http.get(base, params={"follow": "true", "tailLines": "1"}) as r:
                    return await r.text()

            task = asyncio.create_task(follow())
            await asyncio.sleep(0.3)
            assert not task.done(), "follow ended while the container runs"
            writer.write("stderr", b"four\n")
            writer.close()
            assert await asyncio.wait_for(task, 5) == "three\nfour\n"
    finally:
        await server.stop()


async def test_kill_container_through_the_control_socket(tmp_path: Path, worker: FakeWorker) -> None:
    control = ControlServer(FakeRegistry(worker), tmp_path / "node.sock")  # type: ignore[arg-type]
    await control.start()
    try:
        assert (tmp_path / "node.sock").stat().st_mode & 0o777 == 0o600
        reply = await asyncio.to_thread(faults.kill_container, tmp_path, "ns", "p", signal="term")
        assert reply["pid"] == 42
        await asyncio.to_thread(faults.kill_container, tmp_path, "ns", "p", "c", exit_code=42)
        assert worker.killed == [(None, int(signal.SIGTERM), None), ("c", None, 42)]
        with pytest.raises(faults.FaultError, match="not on this node"):
            await asyncio.to_thread(faults.kill_container, tmp_path, "ns", "nope")
        with pytest.raises(faults.FaultError, match="not running"):
            await asyncio.to_thread(faults.kill_container, tmp_path, "ns", "p", "other")
        assert await asyncio.to_thread(faults.running_containers, tmp_path) == FakeRegistry(worker).running()
    finally:
        await control.stop()


def test_kill_container_argument_checks(tmp_path: Path) -> None:
    with pytest.raises(faults.FaultError, match="not both"):
        faults.kill_container(tmp_path, "ns", "p", signal=9, exit_code=1)
    with pytest.raises(faults.FaultError, match="outside"):
        faults.kill_container(tmp_path, "ns", "p", exit_code=300)
    with pytest.raises(faults.FaultError, match="cannot reach"):
        faults.kill_container(tmp_path, "ns", "p", exit_code=1)


@pytest.mark.parametrize(
    ("value", "number"), [("SIGTERM", 15), ("kill", 9), ("15", 15), (2, 2), (None, None)]
)
def test_parse_signal(value: Any, number: int | None) -> None:
    assert faults.parse_signal(value) == number


def test_parse_signal_unknown() -> None:
    with pytest.raises(faults.FaultError):
        faults.parse_signal("SIGNOPE")


@pytest.mark.parametrize(
    ("pod", "expected"),
    [
        ({"metadata": {}, "status": {"phase": "Running"}}, True),
        ({"metadata": {}, "status": {"phase": "Succeeded"}}, False),
        ({"metadata": {"ownerReferences": [{"kind": "DaemonSet"}]}, "status": {"phase": "Running"}}, False),
        ({"metadata": {"annotations": {"kubernetes.io/config.mirror": "x"}}, "status": {}}, False),
        ({"metadata": {"ownerReferences": [{"kind": "Job"}]}, "status": {"phase": "Pending"}}, True),
    ],
)
def test_evictable(pod: dict[str, Any], expected: bool) -> None:
    assert faults.evictable(pod) is expected


def test_drain_evicts_and_retries_pdb_refusals() -> None:
    from kubernetes.client.exceptions import ApiException

    calls: list[str] = []
    refusals = {"ns/guarded": 2}

    def evict(name: str, namespace: str, body: dict[str, Any]) -> None:
        key = f"{namespace}/{name}"
        calls.append(key)
        assert body["kind"] == "Eviction" and body["deleteOptions"]["preconditions"]["uid"] == f"uid-{name}"
        if refusals.get(key):
            refusals[key] -= 1
            raise ApiException(status=429, reason="Too Many Requests")
        if name == "gone":
            raise ApiException(status=404, reason="Not Found")

    core = SimpleNamespace(create_namespaced_pod_eviction=evict)
    pending = {("ns", n): f"uid-{n}" for n in ("a", "guarded", "gone")}
    slept: list[float] = []
    evicted = faults._evict_all(
        core, pending, deadline=float("inf"), grace_period_seconds=None, sleep=slept.append
    )
    assert evicted == {("ns", "a"): "uid-a", ("ns", "guarded"): "uid-guarded"}
    assert calls.count("ns/guarded") == 3 and len(slept) == 2


def test_drain_gives_up_when_a_budget_never_allows() -> None:
    from kubernetes.client.exceptions import ApiException

    def evict(name: str, namespace: str, body: dict[str, Any]) -> None:
        raise ApiException(status=429, reason="Too Many Requests")

    core = SimpleNamespace(create_namespaced_pod_eviction=evict)
    with pytest.raises(faults.FaultError, match="PodDisruptionBudget"):
        faults._evict_all(core, {("ns", "a"): "u"}, deadline=0, grace_period_seconds=5, sleep=lambda s: None)
