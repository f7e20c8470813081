"""KbatchJobTrigger.on_kill against the local control plane: a user kills a *deferred* task (the
official provider leaves its Job running, #36090).

The triggerer cancels the trigger's task first (``run()`` sees ``CancelledError``), then awaits
``on_kill()`` (bounded by ``[triggerer] on_kill_timeout``, 30 s). These tests do the same with a
real Job whose pods are real processes of the process node, marked by an argument that is unique
to the test: after ``on_kill`` no Job, no pod and no process may remain (``delete``), or the Job is
suspended with no pod or process left (``suspend``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_kbatch.hooks.kbatch import KbatchHook
from airflow_provider_kbatch.spec.manifest import build_job_manifest
from airflow_provider_kbatch.spec.names import JobIdentity
from airflow_provider_kbatch.spec.stage import StageSpec
from airflow_provider_kbatch.status import job_outcome
from airflow_provider_kbatch.triggers.job import KbatchJobTrigger
from tests.conftest import ClusterHandle, wait_until

pytestmark = pytest.mark.integration
log = logging.getLogger(__name__)
CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
# the same message the triggerer cancels with on a user action (mark failed/success, clear)
USER_ACTION = "user action"


def processes_with(marker: str) -> list[int]:
    """Pids of the processes whose command line holds ``marker`` (the pods' containers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


def start_job(hook: KbatchHook, namespace: str, marker: str) -> dict[str, Any]:
    """A 2-index Job whose pods sleep for ten minutes, each with ``marker`` on its command line."""
    spec = StageSpec(
        image="python:3.11-slim",
        command=("python", "-c", "import sys, time; time.sleep(600)", marker),
        completions=2,
        parallelism=2,
    )
    identity = JobIdentity(dag_id="kbatch_test_on_kill", task_id="sleepy", run_id=f"manual__{marker}")
    job = hook.create_job(namespace, build_job_manifest(spec, identity, generation=1, namespace=namespace))
    wait_until(lambda: len(processes_with(marker)) >= 2, timeout=120, what="both pods running as processes")
    return job


async def deferred_then_killed(trigger: KbatchJobTrigger) -> float:
    """Run the trigger as the triggerer does, cancel it by user action, await on_kill; the
    seconds on_kill took."""
    events: list[Any] = []

    async def consume() -> None:
        async for event in trigger.run():
            events.append(event)

    task = asyncio.create_task(consume())
    await asyncio.sleep(3)  # the watch is established and the logs are streaming
    assert not task.done(), f"the trigger ended by itself: {events} {task}"
    task.cancel(USER_ACTION)
    with pytest.raises(asyncio.CancelledError):
        await task  # cancellation propagates: the trigger does not swallow it
    assert events == []
    started = time.monotonic()
    await asyncio.wait_for(trigger.on_kill(), timeout=30)
    return time.monotonic() - started


def pods(hook: KbatchHook, namespace: str, uid: str) -> list[dict[str, Any]]:
    return hook.list_pods(namespace, f"{CONTROLLER_UID}={uid}")


def test_on_kill_while_deferred_deletes_the_job_its_pods_and_processes(
    devcluster: ClusterHandle, namespace: str, record_property: Any
) -> None:
    hook = KbatchHook()
    marker = f"kbatch-on-kill-{secrets.token_hex(6)}"
    job = start_job(hook, namespace, marker)
    name, uid = job["metadata"]["name"], job["metadata"]["uid"]
    trigger = KbatchJobTrigger(
        job_name=name, namespace=namespace, job_uid=uid, index_map="0-1", wait={"progress_interval": 1}
    )

    on_kill_seconds = asyncio.run(deferred_then_killed(trigger))
    killed = time.monotonic()
    assert on_kill_seconds < 5, "well inside [triggerer] on_kill_timeout"
    wait_until(lambda: processes_with(marker) == [], timeout=60, what="no container process left")
    gone = time.monotonic() - killed
    wait_until(lambda: hook.get_job(namespace, name) is None, timeout=60, what="the Job deleted")
    assert pods(hook, namespace, uid) == [], "foreground deletion: the pods went first"
    assert hook.list_jobs(namespace, "app.kubernetes.io/managed-by=airflow-provider-kbatch") == []
    record_property("on_kill_call_s", round(on_kill_seconds, 3))
    record_property("on_kill_to_no_process_s", round(gone, 3))
    log.info("measured on_kill call %.3fs, no process left %.3fs after it", on_kill_seconds, gone)

    # a second kill (e.g. the user clicks again, or the Job was already collected) is harmless
    asyncio.run(asyncio.wait_for(trigger.on_kill(), timeout=30))


def test_on_kill_suspend_keeps_the_job_but_stops_its_pods(devcluster: ClusterHandle, namespace: str) -> None:
    hook = KbatchHook()
    marker = f"kbatch-on-kill-{secrets.token_hex(6)}"
    job = start_job(hook, namespace, marker)
    name, uid = job["metadata"]["name"], job["metadata"]["uid"]
    trigger = KbatchJobTrigger(job_name=name, namespace=namespace, job_uid=uid, on_kill_action="suspend")
    try:
        asyncio.run(deferred_then_killed(trigger))
        wait_until(lambda: processes_with(marker) == [], timeout=60, what="no container process left")
        wait_until(lambda: pods(hook, namespace, uid) == [], timeout=60, what="the pods deleted")
        now = hook.get_job(namespace, name)
        assert now is not None and now["metadata"]["uid"] == uid, "the Job itself is kept"
        assert now["spec"]["suspend"] is True
        outcome = wait_until(
            lambda: (o := job_outcome(hook.get_job(namespace, name) or {})).suspended and o.active == 0 and o,
            timeout=60,
            what="the Job suspended with nothing active",
        )
        assert not outcome.finished
    finally:
        hook.delete_job(namespace, name)


def test_on_kill_keep_leaves_the_job_running(devcluster: ClusterHandle, namespace: str) -> None:
    hook = KbatchHook()
    marker = f"kbatch-on-kill-{secrets.token_hex(6)}"
    job = start_job(hook, namespace, marker)
    name = job["metadata"]["name"]
    trigger = KbatchJobTrigger(job_name=name, namespace=namespace, on_kill_action="keep")
    try:
        asyncio.run(deferred_then_killed(trigger))
        assert len(processes_with(marker)) == 2
        assert hook.get_job(namespace, name)["spec"]["suspend"] is False  # type: ignore[index]
    finally:
        hook.delete_job(namespace, name)
        wait_until(lambda: processes_with(marker) == [], timeout=60, what="cleanup")
