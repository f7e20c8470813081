"""Headline figures of the README, measured on this machine.

    make bench                                   # everything, at the sizes of the README
    python benchmarks/run.py --only latency      # one item (repeatable: --only a --only b)
    python benchmarks/run.py --only waiting --jobs 1,100 --window 60

Items (each prints a table; the side-by-side ones with the kbatch / official ratio):

* ``cluster``: warm ``devcluster up`` time to ready (median of ``--runs`` fresh clusters), idle
  memory of the control plane, one Indexed Job of ``--indexes`` completions on the process node;
* ``latency``: last container exit -> task end, in ``airflow dags test`` and under the scheduler
  and triggerer, ``--latency-runs`` alternating runs each (benchmarks/latency.py);
* ``waiting``: API server requests per waiting Job per minute, open watches, triggerer memory
  growth and event latency p50/p99 with ``--jobs`` deferred Jobs (benchmarks/waiting.py);
* ``triggerloop``: the same figures at ``--jobs`` waiting Jobs held by one trigger loop, as a
  triggerer runs them, without the scheduler (benchmarks/triggerloop.py; the pods are simulated);
* ``fanout``: one kbatch stage of ``--fanout`` indexes versus as many mapped official tasks;
  ``--fanout-kbatch-only`` adds a kbatch run alone at that size (benchmarks/fanout.py);
* ``retry``: ``--failed`` of ``--retry-indexes`` indexes fail once: index runs and wall time to
  success (benchmarks/retry.py).

The side-by-side items share one fresh development cluster and one Airflow deployment (PostgreSQL,
scheduler, triggerer, api-server, dag-processor; ``--airflow-parallelism`` worker slots) with the
DAGs of ``benchmarks/dags``, and a SQLite home for ``dags test``; all are stopped at the end.
``--cluster-dir`` and ``--airflow-dir`` use a running cluster and deployment instead (``make
airflow-up`` starts both in ``~/.cache/kbatch/demo``), e.g. to rerun item 1 after a change::

    python benchmarks/run.py --only latency --cluster-dir ~/.cache/kbatch/demo/cluster \\
        --airflow-dir ~/.cache/kbatch/demo/airflow-deployment
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


ITEMS = ("cluster", "latency", "waiting", "triggerloop", "fanout", "retry")


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", action="append", choices=ITEMS, help="run this item only (repeatable)")
    p.add_argument("--runs", type=int, default=3, help="cluster: fresh clusters started")
    p.add_argument("--indexes", type=int, default=1000, help="cluster: completions of the bare Job")
    p.add_argument("--parallelism", type=int, default=50, help="parallelism of the Indexed Jobs")
    p.add_argument("--latency-runs", type=int, default=5, help="latency: runs of each operator per mode")
    p.add_argument("--latency-sleep", type=float, default=10.0, help="latency: seconds each container runs")
    p.add_argument("--modes", default="dags-test,deployed", help="latency: dags-test, deployed or both")
    p.add_argument("--jobs", type=_ints, default=[1, 100], help="waiting: deferred Jobs at once, e.g. 1,100")
    p.add_argument("--window", type=float, default=60.0, help="waiting: seconds of the measuring window")
    p.add_argument("--waiting-operators", default="kbatch,official", help="waiting: kbatch, official or both")
    p.add_argument("--defer-timeout", type=float, help="waiting: most seconds to wait for all to defer")
    p.add_argument("--fanout", type=int, default=100, help="fanout: indexes / mapped official tasks")
    p.add_argument("--fanout-kbatch-only", type=int, default=0, help="fanout: also kbatch alone at this size")
    p.add_argument("--retry-indexes", type=int, default=100, help="retry: indexes of the stage")
    p.add_argument("--failed", type=int, default=10, help="retry: indexes that fail on the first try")
    p.add_argument("--nodes", type=int, default=3, help="process nodes of the cluster (110 pods each)")
    p.add_argument("--airflow-parallelism", type=int, default=4, help="LocalExecutor worker slots")
    p.add_argument("--client-qps", type=int, default=300, help="triggerloop: the controllers' client QPS")
    p.add_argument("--cluster-dir", type=Path, help="use this running cluster (devcluster --state-dir)")
    p.add_argument("--airflow-dir", type=Path, help="use this running deployment (airflow up --state-dir)")
    return p


def side_by_side(args: argparse.Namespace, items: list[str]) -> None:
    from benchmarks import fanout, latency, retry, triggerloop, waiting
    from benchmarks.harness import standalone

    modes = [m for m in args.modes.split(",") if m]
    needs_dags_test = "latency" in items and "dags-test" in modes
    needs_deployment = any(i in items for i in ("waiting", "fanout", "retry")) or (
        "latency" in items and "deployed" in modes
    )
    with standalone(
        nodes=args.nodes,
        deployment=needs_deployment,
        dags_test=needs_dags_test,
        parallelism=args.airflow_parallelism,
        cluster_dir=args.cluster_dir,
        airflow_dir=args.airflow_dir,
        simulated_nodes=1 if "triggerloop" in items else 0,
        client_qps=args.client_qps if "triggerloop" in items else None,
    ) as ground:
        if "latency" in items:
            latency.main(ground, runs=args.latency_runs, sleep=args.latency_sleep, modes=modes)
        if "waiting" in items:
            waiting.main(
                ground,
                jobs=args.jobs,
                window=args.window,
                operators=[o for o in args.waiting_operators.split(",") if o],
                defer_timeout=args.defer_timeout,
            )
        if "triggerloop" in items:
            triggerloop.main(
                ground,
                jobs=args.jobs,
                window=args.window,
                operators=[o for o in args.waiting_operators.split(",") if o],
            )
        if "fanout" in items:
            fanout.main(
                ground, indexes=args.fanout, parallelism=args.parallelism, kbatch_only=args.fanout_kbatch_only
            )
        if "retry" in items:
            retry.main(ground, indexes=args.retry_indexes, failed=args.failed, parallelism=args.parallelism)


def main() -> int:
    args = parser().parse_args()
    items = args.only or list(ITEMS)
    ensure_binaries()
    if any(i != "cluster" for i in items):
        side_by_side(args, items)
    if "cluster" in items:
        cluster_figures(args)
    return 0


def cluster_figures(args: argparse.Namespace) -> None:
    times, memory = bench_up(args.runs)
    print(f"devcluster up (warm, fresh state) : median {statistics.median(times):.1f}s over {len(times)} runs "
          f"({', '.join(f'{t:.1f}' for t in times)})")  # fmt: skip
    print(f"idle memory (RSS)                 : {sum(memory.values()):.0f} MiB in all "
          f"({', '.join(f'{c} {m:.0f}' for c, m in memory.items())})")  # fmt: skip
    wall = bench_indexed(args.indexes, args.parallelism)
    print(f"Indexed Job, {args.indexes} completions, parallelism {args.parallelism} : {wall:.1f}s wall "
          f"({args.indexes / wall:.1f} pods/s) on the process node")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
