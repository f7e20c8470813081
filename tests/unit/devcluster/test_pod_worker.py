"""The pod lifecycle against a fake API server: real processes, recorded API calls."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_kbatch.devcluster.node import base_env, host_tools
from airflow_provider_kbatch.devcluster.processnode.kubeapi import ApiError
from airflow_provider_kbatch.devcluster.processnode.pods import NodeContext, PodWorker

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need mount namespaces (root)")


class FakeClient:
    """Records requests; answers what a pod worker asks for."""

    def __init__(self, objects: dict[str, Any] | None = None) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.objects = objects or {}

    async def request(self, method: str, path: str, *, body: Any = None, **_: Any) -> Any:
        self.calls.append((method, path, body))
        if method == "GET":
            return await self.get(path)
        return {}

    async def get(self, path: str, **_: Any) -> Any:
        if path in self.objects:
            return self.objects[path]
        raise ApiError(404, {"message": "not found"}, path)

    async def get_or_none(self, path: str) -> Any:
        return self.objects.get(path)

    def patches(self) -> list[dict[str, Any]]:
        return [b["status"] for m, p, b in self.calls if m == "PATCH" and p.endswith("/status")]


def _pod(command: list[str], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "uid-1", "generation": 1},
        "spec": {
            "nodeName": "n0",
            "restartPolicy": "Never",
            "containers": [{"name": "c", "image": "x", "command": command}],
            **spec,
        },
        "status": {"phase": "Pending"},
    }


def _context(tmp_path: Path, client: FakeClient) -> NodeContext:
    return NodeContext(
        client=client,  # type: ignore[arg-type]
        state_dir=tmp_path,
        tools=host_tools(),
        allocatable={"cpu": "2", "memory": "1Gi"},
        service_env={},
        base_env=base_env(),
        restart_backoff=0.1,
    )


async def test_a_failing_container_reports_failed_with_its_exit_code(tmp_path: Path) -> None:
    client = FakeClient()
    worker = PodWorker(
        _context(tmp_path, client), _pod(["sh", "-c", "echo out; echo 'why' > /dev/termination-log; exit 3"])
    )
    await asyncio.wait_for(worker.run(), 20)
    last = client.patches()[-1]
    assert last["phase"] == "Failed"
    terminated = last["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"], terminated["message"]) == (3, "Error", "why\n")
    assert last["podIP"] == "127.0.0.1" and last["startTime"]
    assert {c["type"]: c["status"] for c in last["conditions"]}["Ready"] == "False"
    assert (worker.dir / "c.log").read_text().split(" ", 3)[1:] == ["stdout", "F", "out\n"]
    assert not any(m == "DELETE" for m, _, _ in client.calls), "a pod that was not deleted stays"


async def test_deletion_sigterms_then_reports_and_deletes_with_grace_zero(tmp_path: Path) -> None:
    client = FakeClient()
    pod = _pod(["sleep", "60"])
    worker = PodWorker(_context(tmp_path, client), pod)
    task = asyncio.create_task(worker.run())
    while not worker.procs:
        await asyncio.sleep(0.02)
    pid = worker.procs["c"].pid
    deleted = dict(
        pod,
        metadata=dict(
            pod["metadata"], deletionTimestamp="2030-01-01T00:00:00Z", deletionGracePeriodSeconds=5
        ),
    )
    worker.observe(deleted)
    await asyncio.wait_for(task, 20)
    assert not Path(f"/proc/{pid}").exists()
    last = client.patches()[-1]
    assert last["phase"] == "Failed"
    assert last["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 143
    method, path, body = client.calls[-1]
    assert (method, path) == ("DELETE", "/api/v1/namespaces/ns/pods/p")
    assert body == {"gracePeriodSeconds": 0, "preconditions": {"uid": "uid-1"}}


async def test_on_failure_restarts_with_a_count(tmp_path: Path) -> None:
    client = FakeClient()
    script = "if [ -e /scratch/x ]; then exit 0; fi; touch /scratch/x; exit 1"
    pod = _pod(
        ["sh", "-c", script],
        restartPolicy="OnFailure",
        volumes=[{"name": "s", "emptyDir": {}}],
    )
    pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "s", "mountPath": str(tmp_path / "scratch-mnt")}]
    pod["spec"]["containers"][0]["command"] = [
        "sh",
        "-c",
        script.replace("/scratch", str(tmp_path / "scratch-mnt")),
    ]
    worker = PodWorker(_context(tmp_path, client), pod)
    await asyncio.wait_for(worker.run(), 20)
    last = client.patches()[-1]
    status = last["containerStatuses"][0]
    assert last["phase"] == "Succeeded"
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 1
    waits = [p["containerStatuses"][0]["state"]["waiting"] for p in client.patches()]
    assert any(w and w["reason"] == "CrashLoopBackOff" for w in waits)
    assert (worker.dir / "c.log.1").exists()


async def test_missing_secret_then_stop_reports_config_error_and_event(tmp_path: Path) -> None:
    client = FakeClient()
    pod = _pod(["true"])
    pod["spec"]["containers"][0]["env"] = [
        {"name": "T", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}
    ]
    worker = PodWorker(_context(tmp_path, client), pod)
    task = asyncio.create_task(worker.run())
    while not any(
        (p["containerStatuses"][0]["state"]["waiting"] or {}).get("reason") == "CreateContainerConfigError"
        for p in client.patches()
    ):
        await asyncio.sleep(0.02)
    worker.forget()
    await asyncio.wait_for(task, 10)
    events = [b for m, p, b in client.calls if m == "POST" and p.endswith("/events")]
    assert events and events[0]["reason"] == "Failed" and events[0]["involvedObject"]["uid"] == "uid-1"
