"""Items 2 and 3 at the issue's size: N waiting Jobs held by one triggerer event loop.

Under the deployment (``waiting.py``) every waiting Job is a task instance that a worker must
start and defer, which on 2 cores caps N at tens. What a triggerer pays per waiting Job is the
triggers' own doing, so this item runs them the way the triggerer does, without the scheduler:
one process (``python -m benchmarks.triggerloop loop ...``) builds N triggers, kbatch's
``KbatchJobTrigger`` or the cncf provider's ``KubernetesJobTrigger`` (as its deferrable
``KubernetesJobOperator`` builds it: 10 s poll, no XCom sidecar), and runs every ``run()`` as a
task of one asyncio loop, as the triggerer's ``TriggerRunner`` does.

The benchmark creates N one-pod Jobs on the simulated node (every pod "runs" ``seconds``, then
succeeds: no process, so 1,000 fit on 2 cores), starts the loop, waits until all N pods run,
then reads the API server's ``/metrics`` over ``--window`` seconds (requests by verb on Jobs,
pods, ConfigMaps and events less the background rate, per waiting Job per minute; open
WATCH requests) and samples the loop's RSS (peak during the window minus before the triggers
started). Then the pods end, and the event latency of each Job is the moment its trigger yielded
minus the moment the benchmark's own Job watch saw the Job finished (p50 / p99 over N): the
latency beyond the Job controller.

    python benchmarks/run.py --only triggerloop --jobs 1,1000 --window 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from benchmarks.harness import (
    OPERATORS,
    Ground,
    PodRecorder,
    percentile,
    rss_mib,
    table,
)
from benchmarks.waiting import RECORDER_WATCHES, background, measure_window, request_rows, running_pods

REPO = Path(__file__).resolve().parent.parent
CONN_ID = "kubernetes_default"


@dataclass
class LoopResult:
    operator: str
    jobs: int
    window: float
    per_job_minute: dict[str, float]
    watches: float
    rss_before: float
    rss_peak: float
    ramp_seconds: float  # loop started -> all N pods running
    latencies: list[float] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)  # event status -> count

    @property
    def total(self) -> float:
        return sum(self.per_job_minute.values())

    @property
    def growth(self) -> float:
        return self.rss_peak - self.rss_before


# ---------------------------------------------------------------- the loop process
def _trigger(operator: str, namespace: str, job: Mapping[str, str]) -> Any:
    if operator == "kbatch":
        from airflow_provider_kbatch.triggers.job import KbatchJobTrigger

        return KbatchJobTrigger(
            job_name=job["name"], namespace=namespace, conn_id=CONN_ID, job_uid=job["uid"]
        )
    from airflow.providers.cncf.kubernetes.triggers.job import KubernetesJobTrigger

    return KubernetesJobTrigger(
        job_name=job["name"],
        job_namespace=namespace,
        pod_names=[job["pod"]],
        pod_namespace=namespace,
        base_container_name="base",
        kubernetes_conn_id=CONN_ID,
        poll_interval=10.0,
        get_logs=True,
        do_xcom_push=False,
    )


async def _loop(triggers: Sequence[tuple[str, Any]], out: TextIO) -> None:
    async def first_event(name: str, trigger: Any) -> None:
        try:
            async for event in trigger.run():
                status = str((event.payload or {}).get("status", "?"))
                break
            else:
                status = "no event"
        except Exception as err:  # reported, never fatal to the other triggers
            status = f"error: {type(err).__name__}: {err}"[:200]
        print(json.dumps({"event": name, "at": time.time(), "status": status}), file=out, flush=True)

    print(json.dumps({"started": len(triggers), "at": time.time()}), file=out, flush=True)
    await asyncio.gather(*(first_event(name, trigger) for name, trigger in triggers))


def loop_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.triggerloop loop")
    p.add_argument("--operator", choices=OPERATORS, required=True)
    p.add_argument("--namespace", required=True)
    p.add_argument("--jobs", type=Path, required=True, help="JSON list of {name, uid, pod}")
    p.add_argument("--log", type=Path, required=True, help="the triggers' log file")
    args = p.parse_args(argv)
    # stdout carries the protocol; whatever else writes to fd 1 (Airflow's logging) goes to stderr
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    # The triggers log as they do in a triggerer (progress lines included), into a file.
    logging.basicConfig(filename=args.log, level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    jobs = json.loads(args.jobs.read_text())
    # Imported and built before the RSS is read: the growth is what the waits themselves hold
    # (clients, watches, per-trigger state), as in a triggerer that has both providers loaded.
    triggers = [(job["name"], _trigger(args.operator, args.namespace, job)) for job in jobs]
    import airflow.providers.cncf.kubernetes.hooks.kubernetes  # noqa: F401

    import airflow_provider_kbatch.hooks.async_kbatch  # noqa: F401

    print(json.dumps({"ready": True}), file=out, flush=True)
    sys.stdin.readline()  # the benchmark reads the RSS before, then says go
    asyncio.run(_loop(triggers, out))
    return 0


# ---------------------------------------------------------------- the benchmark
def _job(name: str, seconds: float) -> dict[str, Any]:
    from airflow_provider_kbatch.devcluster.processnode.simulated import pod_request

    sim = pod_request({"seconds": seconds, "exitCode": 0})
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "completions": 1,
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": sim["annotations"]},
                "spec": {
                    "restartPolicy": "Never",
                    "nodeSelector": sim["node_selector"],
                    "tolerations": sim["tolerations"],
                    "containers": [{"name": "base", "image": "kbatch-sim", "command": ["true"]}],
                },
            },
        },
    }


def _create_jobs(
    ground: Ground, namespace: str, n: int, seconds: float, timeout: float
) -> list[dict[str, str]]:
    """N Jobs and, once each has it, its pod's name (the official trigger needs it)."""
    from kubernetes import client

    batch, core = client.BatchV1Api(ground.api), client.CoreV1Api(ground.api)
    uids = {}
    for i in range(n):
        created = batch.create_namespaced_job(namespace, _job(f"wait-{i:05d}", seconds))
        uids[created.metadata.name] = created.metadata.uid
    deadline = time.monotonic() + timeout
    pods: dict[str, str] = {}
    while len(pods) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pods)} of {n} Jobs got a pod in {timeout:.0f}s")
        for pod in core.list_namespaced_pod(namespace).items:
            job = (pod.metadata.labels or {}).get("batch.kubernetes.io/job-name")
            if job in uids:
                pods.setdefault(job, pod.metadata.name)
        time.sleep(1)
    return [{"name": name, "uid": uid, "pod": pods[name]} for name, uid in uids.items()]


def measure(
    ground: Ground,
    operator: str,
    *,
    jobs: int,
    window: float,
    rate: Mapping[str, float],
    watches0: float,
    settle: float = 10.0,
) -> LoopResult:
    namespace = ground.namespace(operator)
    # every pod runs through the creation of the others, the loop's start, the settling and the
    # window, then ends (a Job that ends inside the window is reported)
    seconds = 15 + 0.1 * jobs + settle + window
    spec = ground.scratch / f"{namespace}.jobs.json"
    log = ground.scratch / f"{namespace}.triggers.log"
    with PodRecorder(ground.api, namespace) as recorder, open(f"{log}.stderr", "w") as stderr:
        created = _create_jobs(ground, namespace, jobs, seconds, timeout=120 + 0.5 * jobs)
        spec.write_text(json.dumps(created))
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.triggerloop",
                "loop",
                "--operator",
                operator,
                "--namespace",
                namespace,
                "--jobs",
                str(spec),
                "--log",
                str(log),
            ],
            cwd=REPO,
            env={
                "AIRFLOW_HOME": str(ground.scratch / "loop-home"),
                **ground.cluster_env,
                "PYTHONPATH": str(REPO),
            },
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        assert proc.stdin is not None and proc.stdout is not None
        try:
            if json.loads(proc.stdout.readline() or "{}").get("ready") is not True:
                raise RuntimeError(f"the {operator} trigger loop did not start (exit {proc.wait()})")
            rss_before = rss_mib(proc.pid)
            started = time.monotonic()
            proc.stdin.write("go\n")
            proc.stdin.flush()
            while running_pods(ground, namespace) < jobs:
                if time.monotonic() - started > 120 + 0.5 * jobs:
                    raise TimeoutError(f"not all {jobs} pods running")
                time.sleep(1)
            ramp = time.monotonic() - started
            time.sleep(settle)  # the triggers' first lists and watches pass
            measured = measure_window(ground, proc.pid, window, step=2.0)
            if recorder.jobs_done:
                print(f"{operator}: {len(recorder.jobs_done)} of {jobs} Jobs ended inside the window")
            events: dict[str, float] = {}
            statuses: dict[str, int] = {}
            for line in proc.stdout:
                found = json.loads(line)
                if "event" in found:
                    events[found["event"]] = float(found["at"])
                    statuses[found["status"]] = statuses.get(found["status"], 0) + 1
                    if len(events) == jobs:
                        break
            proc.wait(60)
            time.sleep(1)
        finally:
            if proc.poll() is None:
                proc.kill()
    ground.drop(namespace)
    latencies = [at - recorder.jobs_done[name] for name, at in events.items() if name in recorder.jobs_done]
    return LoopResult(
        operator=operator,
        jobs=jobs,
        window=measured.seconds,
        per_job_minute=measured.per_job_minute(rate, jobs),
        watches=measured.watches - watches0 - RECORDER_WATCHES,
        rss_before=rss_before,
        rss_peak=measured.peak,
        ramp_seconds=ramp,
        latencies=latencies,
        events=statuses,
    )


NONE = LoopResult("-", 1, float("nan"), {}, float("nan"), float("nan"), float("nan"), float("nan"))


def rows(found: Mapping[str, LoopResult]) -> list[tuple[str, Any, Any]]:
    k, o = found.get("kbatch", NONE), found.get("official", NONE)
    out = request_rows(k.per_job_minute, o.per_job_minute)
    out += [
        ("open WATCH requests added", k.watches, o.watches),
        ("loop RSS growth, MiB", k.growth, o.growth),
        ("loop RSS growth per Job, KiB", 1024 * k.growth / k.jobs, 1024 * o.growth / o.jobs),
        (
            "event latency p50, s (Job seen finished -> trigger event)",
            percentile(k.latencies, 50),
            percentile(o.latencies, 50),
        ),
        ("event latency p99, s", percentile(k.latencies, 99), percentile(o.latencies, 99)),
        ("loop started -> all pods running, s", k.ramp_seconds, o.ramp_seconds),
        ("trigger events", sum(k.events.values()), sum(o.events.values())),
    ]
    return out


def _events(result: LoopResult) -> str:
    return ", ".join(f"{n} {status}" for status, n in sorted(result.events.items())) or "-"


def main(
    ground: Ground,
    *,
    jobs: Sequence[int],
    window: float,
    baseline: float = 30.0,
    settle: float = 10.0,
    operators: Sequence[str] = OPERATORS,
) -> dict[int, dict[str, LoopResult]]:
    rate, watches0 = background(ground, baseline)
    results: dict[int, dict[str, LoopResult]] = {}
    for i, n in enumerate(jobs):
        sequence = tuple(operators) if i % 2 == 0 else tuple(reversed(operators))
        found = {
            op: measure(ground, op, jobs=n, window=window, rate=rate, watches0=watches0, settle=settle)
            for op in sequence
        }
        results[n] = found
        table(f"{n} Jobs waiting in one trigger loop, {window:.0f} s window", rows(found))
        for op, result in found.items():
            print(f"{op} events: {_events(result)}")
    return results


if __name__ == "__main__":
    if sys.argv[1:2] != ["loop"]:
        sys.exit(
            "usage: python -m benchmarks.triggerloop loop ... (the benchmark runs it: benchmarks/run.py)"
        )
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    sys.exit(loop_main(sys.argv[2:]))
