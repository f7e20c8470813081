"""KbatchHook / AsyncKbatchHook against the local control plane (real apiserver, Job controller,
garbage collector and process node). The connection comes from ``AIRFLOW_CONN_KUBERNETES_DEFAULT``,
set by the ``devcluster`` fixture, exactly as Airflow would read it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_kbatch.errors import JobAlreadyExists, JobDeleted, KbatchApiError
from airflow_provider_kbatch.hooks.kbatch import AsyncKbatchHook, KbatchHook
from tests.conftest import ClusterHandle, dump, wait_until

pytestmark = pytest.mark.integration

LABEL = "kbatch.io/test=hooks"


def job_manifest(
    name: str, command: list[str], *, completions: Any = 1, suspend: bool = False
) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"kbatch.io/test": "hooks"}},
        "spec": {
            "completions": completions,
            "backoffLimit": 0,
            "suspend": suspend,
            "ttlSecondsAfterFinished": 600,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "python:3.11-slim", "command": command}],
                }
            },
        },
    }


def finished(job: dict[str, Any]) -> str | None:
    for condition in (job.get("status") or {}).get("conditions") or ():
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return str(condition["type"])
    return None


@pytest.fixture
def hook(devcluster: ClusterHandle) -> KbatchHook:
    return KbatchHook()


def test_server_version(hook: KbatchHook) -> None:
    assert hook.server_version() >= (1, 30)
    assert hook.test_connection()[0]


def test_create_get_list_delete_job(hook: KbatchHook, namespace: str) -> None:
    created = hook.create_job(
        namespace, job_manifest("hooks-crud", ["python", "-c", "import time; time.sleep(30)"])
    )
    uid = created["metadata"]["uid"]
    assert created["kind"] == "Job" and created["spec"]["completionMode"] == "NonIndexed"

    assert hook.get_job(namespace, "hooks-crud")["metadata"]["uid"] == uid  # type: ignore[index]
    listed = hook.list_jobs(namespace, LABEL)
    assert [(j["kind"], j["metadata"]["uid"]) for j in listed] == [("Job", uid)]
    assert hook.list_jobs(namespace, "kbatch.io/test=other") == []

    assert hook.delete_job(namespace, "hooks-crud") is True
    wait_until(lambda: hook.get_job(namespace, "hooks-crud") is None, timeout=60, what="job deleted")
    assert hook.delete_job(namespace, "hooks-crud") is False
    wait_until(
        lambda: hook.list_pods(namespace, f"batch.kubernetes.io/controller-uid={uid}") == [], what="pods gone"
    )


def test_create_twice_raises_job_already_exists_with_the_first(hook: KbatchHook, namespace: str) -> None:
    manifest = job_manifest("hooks-twice", ["python", "-c", "print(1)"], suspend=True)
    first = hook.create_job(namespace, manifest)
    with pytest.raises(JobAlreadyExists) as raised:
        hook.create_job(namespace, manifest)
    assert raised.value.job["metadata"]["uid"] == first["metadata"]["uid"]
    assert raised.value.status == 409


def test_422_names_the_field(hook: KbatchHook, namespace: str) -> None:
    with pytest.raises(KbatchApiError) as raised:
        hook.create_job(namespace, job_manifest("hooks-invalid", ["python", "-c", "1"], completions=-1))
    assert raised.value.status == 422
    assert any(cause.field == "spec.completions" for cause in raised.value.causes), dump(raised.value.causes)
    assert "\n  - spec.completions: " in str(raised.value)


def test_suspend_and_resume(hook: KbatchHook, namespace: str) -> None:
    hook.create_job(namespace, job_manifest("hooks-suspend", ["python", "-c", "print(1)"], suspend=True))
    assert hook.set_suspend(namespace, "hooks-suspend", False)["spec"]["suspend"] is False
    assert hook.set_suspend(namespace, "hooks-suspend", True)["spec"]["suspend"] is True


def test_watch_job_sees_it_complete_and_logs_are_readable(hook: KbatchHook, namespace: str) -> None:
    created = hook.create_job(namespace, job_manifest("hooks-watch", ["python", "-c", "print(1)"]))
    uid = created["metadata"]["uid"]

    async def wait() -> tuple[dict[str, Any], int]:
        seen = 0
        # A short server-side timeout makes the watch end and resume from its resourceVersion.
        async for job in AsyncKbatchHook().watch_job(namespace, "hooks-watch", uid=uid, timeout_seconds=3):
            seen += 1
            if finished(job):
                return job, seen
        raise AssertionError("watch ended")

    job, seen = asyncio.run(asyncio.wait_for(wait(), 120))
    assert finished(job) == "Complete", dump(job)
    assert seen >= 2  # the initial state, then at least the change to Complete
    (pod,) = hook.list_pods(namespace, f"batch.kubernetes.io/controller-uid={uid}")
    assert hook.read_pod_log(namespace, pod["metadata"]["name"], "main") == "1\n"
    events = hook.list_events(namespace, "involvedObject.name=hooks-watch")
    assert any(e.get("reason") == "SuccessfulCreate" for e in events), dump(events)


def test_watch_job_raises_when_the_job_is_deleted(hook: KbatchHook, namespace: str) -> None:
    hook.create_job(namespace, job_manifest("hooks-gone", ["python", "-c", "import time; time.sleep(60)"]))

    async def watch_then_delete() -> None:
        async_hook = AsyncKbatchHook()
        async for _ in async_hook.watch_job(namespace, "hooks-gone", timeout_seconds=30):
            await async_hook.delete_job(namespace, "hooks-gone", propagation="Background")

    with pytest.raises(JobDeleted):
        asyncio.run(asyncio.wait_for(watch_then_delete(), 90))


def test_stream_pod_log_follows_lines(hook: KbatchHook, namespace: str) -> None:
    script = "import time\nfor i in range(3):\n    print('line', i, flush=True)\n    time.sleep(0.5)"
    created = hook.create_job(namespace, job_manifest("hooks-logs", ["python", "-c", script]))
    selector = f"batch.kubernetes.io/controller-uid={created['metadata']['uid']}"

    async def follow() -> list[str]:
        async_hook = AsyncKbatchHook()
        async for kind, pod in async_hook.watch_pods(namespace, selector):
            if kind != "DELETED" and (pod.get("status") or {}).get("phase") in ("Running", "Succeeded"):
                name = pod["metadata"]["name"]
                return [line async for line in async_hook.stream_pod_log(namespace, name, "main")]
        raise AssertionError("no pod ran")

    assert asyncio.run(asyncio.wait_for(follow(), 90)) == ["line 0", "line 1", "line 2"]


def test_concurrent_cas_writers_lose_nothing(hook: KbatchHook, namespace: str) -> None:
    writers = 20
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            KbatchHook().update_config_map_cas(
                namespace,
                "ledger",
                lambda data: {**data, f"stage.t{i}": str(i)},
                labels={"kbatch.io/ledger": "true"},
                max_attempts=100,
            )
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []

    def add(key: str) -> Callable[[dict[str, str]], dict[str, str]]:
        return lambda data: {**data, key: key.rpartition("a")[2]}

    async def write_async() -> None:
        async_hook = AsyncKbatchHook()
        await asyncio.gather(
            *(
                async_hook.update_config_map_cas(namespace, "ledger", add(f"stage.a{i}"), max_attempts=100)
                for i in range(writers)
            )
        )

    asyncio.run(write_async())
    config_map = hook.get_config_map(namespace, "ledger")
    assert config_map is not None
    expected = {f"stage.t{i}": str(i) for i in range(writers)} | {
        f"stage.a{i}": str(i) for i in range(writers)
    }
    assert config_map["data"] == expected
    assert config_map["metadata"]["labels"] == {"kbatch.io/ledger": "true"}


def test_pvc_create_get_delete(hook: KbatchHook, namespace: str) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "workspace"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Mi"}}},
    }
    created = hook.create_pvc(namespace, body)
    assert hook.get_pvc(namespace, "workspace")["metadata"]["uid"] == created["metadata"]["uid"]  # type: ignore[index]
    assert hook.delete_pvc(namespace, "workspace") is True
    wait_until(lambda: hook.get_pvc(namespace, "workspace") is None, timeout=60, what="pvc deleted")
