"""Headline figures of the README, measured on this machine.

    make bench            # or: python benchmarks/run.py [--indexes 1000] [--runs 3]

Prints: warm ``devcluster up`` time to ready (median of N fresh clusters), idle memory of the
whole control plane, and the wall time of one Indexed Job of N completions on the process node
(the fan-out a single kbatch task replaces N Airflow task instances with).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from airflow_provider_kbatch.devcluster.build import ensure_binaries  # noqa: E402
from airflow_provider_kbatch.devcluster.cluster import COMPONENTS, DevCluster  # noqa: E402


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its descendants."""
    total = 0
    pids = [pid]
    while pids:
        current = pids.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
            pids.extend(int(c) for c in children)
        except (OSError, StopIteration):
            continue
    return total / 1024


def bench_up(runs: int) -> tuple[list[float], dict[str, float]]:
    times: list[float] = []
    memory: dict[str, float] = {}
    for i in range(runs):
        with tempfile.TemporaryDirectory(prefix="kbatch-bench-") as tmp:
            cluster = DevCluster(Path(tmp) / "c")
            try:
                started = time.monotonic()
                cluster.up()
                times.append(time.monotonic() - started)
                if i == runs - 1:
                    time.sleep(15)  # let start-up work settle before reading idle memory
                    pids = cluster._load()["pids"]
                    memory = {c: rss_mib(pids[c]) for c in COMPONENTS}
            finally:
                cluster.down()  # also after a failed up: nothing is left running
    return times, memory


def bench_indexed(indexes: int, parallelism: int) -> float:
    from kubernetes import client, config

    with tempfile.TemporaryDirectory(prefix="kbatch-bench-") as tmp:
        cluster = DevCluster(Path(tmp) / "c", nodes=2)
        try:
            cluster.up()
            api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
            batch = client.BatchV1Api(api)
            job = {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": "fanout"},
                "spec": {
                    "completions": indexes,
                    "parallelism": parallelism,
                    "completionMode": "Indexed",
                    "backoffLimitPerIndex": 1,
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [{"name": "main", "image": "busybox", "command": ["true"]}],
                        }
                    },
                },
            }
            started = time.monotonic()
            batch.create_namespaced_job("default", job)
            while True:
                status = batch.read_namespaced_job_status("fanout", "default").status
                done = [
                    c
                    for c in status.conditions or []
                    if c.type in ("Complete", "Failed") and c.status == "True"
                ]
                if done:
                    if done[0].type != "Complete":
                        raise RuntimeError(f"fan-out job failed: {done[0].reason}")
                    return time.monotonic() - started
                time.sleep(0.5)
        finally:
            cluster.down()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--indexes", type=int, default=1000)
    parser.add_argument("--parallelism", type=int, default=50)
    args = parser.parse_args()
    ensure_binaries()
    times, memory = bench_up(args.runs)
    print(f"devcluster up (warm, fresh state) : median {statistics.median(times):.1f}s over {len(times)} runs "
          f"({', '.join(f'{t:.1f}' for t in times)})")  # fmt: skip
    print(f"idle memory (RSS)                 : {sum(memory.values()):.0f} MiB in all "
          f"({', '.join(f'{c} {m:.0f}' for c, m in memory.items())})")  # fmt: skip
    wall = bench_indexed(args.indexes, args.parallelism)
    print(f"Indexed Job, {args.indexes} completions, parallelism {args.parallelism} : {wall:.1f}s wall "
          f"({args.indexes / wall:.1f} pods/s) on the process node")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
