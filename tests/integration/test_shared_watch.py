"""Many waits in one event loop (a triggerer holding many deferred stages) share one Job watch
and one pod watch per namespace: counted on the real API server's ``/metrics`` gauge of open
watches, against the same waits without sharing."""

from __future__ import annotations

import asyncio
import os
import re
import time
from typing import Any

import pytest

from airflow_provider_kbatch.engine.waiter import WaitSettings, wait_for_job
from airflow_provider_kbatch.hooks.kbatch import AsyncKbatchHook, KbatchHook
from tests.conftest import ClusterHandle, wait_until
from tests.integration.test_hooks import job_manifest

pytestmark = pytest.mark.integration

SHARED = 12  # concurrent waits sharing watches
SOLO = 3  # the same waits with share_watches=False: one watch each


def open_watches() -> dict[str, int]:
    """``apiserver_longrunning_requests`` of verb WATCH, by resource (jobs, pods)."""
    from kubernetes import client, config

    api = client.ApiClient(config.load_kube_config(os.environ["KUBECONFIG"]) or None)
    response = api.call_api(
        "/metrics", "GET", auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True
    )
    text = response.data.decode()
    counts = {"jobs": 0, "pods": 0}
    for line in text.splitlines():
        if not line.startswith("apiserver_longrunning_requests{") or 'verb="WATCH"' not in line:
            continue
        resource = re.search(r'resource="([^"]*)"', line)
        if resource and resource.group(1) in counts:
            counts[resource.group(1)] += int(float(line.rsplit(" ", 1)[1]))
    return counts


async def wait_all(namespace: str, shared: list[str], solo: list[str]) -> Any:
    settings = WaitSettings(progress_interval=60, stream_logs=True)
    waits = [
        asyncio.create_task(
            wait_for_job(AsyncKbatchHook(share_watches=share), namespace, name, settings=settings)
        )
        for names, share in ((shared, True), (solo, False))
        for name in names
    ]
    # the most watches open at any moment while the Jobs run (sampled until the waits end)
    most = {"jobs": 0, "pods": 0}
    while not all(w.done() for w in waits):
        sample = await asyncio.to_thread(open_watches)
        most = {kind: max(most[kind], sample[kind]) for kind in most}
        await asyncio.sleep(0.3)
    return most, await asyncio.gather(*waits)


def test_waits_in_one_loop_share_one_job_watch_and_one_pod_watch(
    devcluster: ClusterHandle, namespace: str, record_property: Any
) -> None:
    hook = KbatchHook()
    names = [f"shared-{i}" for i in range(SHARED + SOLO)]
    for name in names:
        hook.create_job(namespace, job_manifest(name, ["sh", "-c", "sleep 6; echo done"]))
    wait_until(
        lambda: all((hook.get_job(namespace, n) or {}).get("status", {}).get("active") for n in names),
        timeout=90,
        what="every Job running",
        interval=0.5,
    )
    baseline = open_watches()
    started = time.monotonic()
    during, results = asyncio.run(wait_all(namespace, names[:SHARED], names[SHARED:]))
    seconds = time.monotonic() - started

    assert all(r.status == "finished" and r.outcome and r.outcome.succeeded for r in results)
    jobs, pods = during["jobs"] - baseline["jobs"], during["pods"] - baseline["pods"]
    record_property("open_watches_for_12_shared_and_3_solo_waits", f"jobs={jobs} pods={pods}")
    record_property("wait_of_15_jobs_s", round(seconds, 1))
    # at most one watch of each kind for the shared waits, one per unshared wait (the gauge does
    # count ours: the unshared ones show)
    assert (jobs, pods) == (1 + SOLO, 1 + SOLO), (baseline, during)
