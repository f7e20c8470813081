"""``python -m airflow_provider_kbatch.devcluster up | down | status | env | build | fault ...``

A local Kubernetes control plane (real etcd, kube-apiserver, kube-controller-manager,
kube-scheduler) and a process node, for tests, the demo and DAG authors. Development tool only:
containers run as local processes, not in a sandbox.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from pathlib import Path

from airflow_provider_kbatch.devcluster.build import ensure_binaries
from airflow_provider_kbatch.devcluster.cluster import DevCluster, DevClusterError, default_state_dir


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m airflow_provider_kbatch.devcluster", description=__doc__)
    parser.add_argument("--name", default="default", help="cluster name (state under the kbatch cache)")
    parser.add_argument("--state-dir", type=Path, help="explicit state directory (overrides --name)")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the cluster in the background and wait until it is ready")
    up.add_argument("--nodes", type=int, default=1, help="number of process nodes to register")
    up.add_argument(
        "--fast-job-backoff",
        metavar="DURATION",
        help="shorten the Job controller's pod failure backoff (default 10s), e.g. 200ms; for tests",
    )
    up.add_argument("--timeout", type=float, default=180, help="seconds to wait for readiness")
    down = sub.add_parser("down", help="stop everything the cluster started")
    down.add_argument("--keep-data", action="store_true", help="keep etcd data and volumes for the next up")
    sub.add_parser("status", help="print what runs, as JSON")
    sub.add_parser("env", help="print shell exports for kubectl, the Python client and Airflow")
    sub.add_parser("build", help="only build (or find cached) control plane binaries")
    fault = sub.add_parser("fault", help="inject a failure")
    fault_sub = fault.add_subparsers(dest="fault", required=True)
    fault_sub.add_parser("restart-apiserver", help="stop and start kube-apiserver")
    stop = fault_sub.add_parser("stop-apiserver", help="stop kube-apiserver (start it with start-apiserver)")
    stop.set_defaults(fault="stop-apiserver")
    fault_sub.add_parser("start-apiserver", help="start a stopped kube-apiserver")
    drain = fault_sub.add_parser("drain", help="cordon a node and evict its pods (Eviction API)")
    drain.add_argument("node")
    drain.add_argument("--timeout", type=float, default=120)
    uncordon = fault_sub.add_parser("uncordon", help="make a drained node schedulable again")
    uncordon.add_argument("node")
    kill = fault_sub.add_parser("kill", help="kill a container's process with a signal or exit code")
    kill.add_argument("namespace")
    kill.add_argument("pod")
    kill.add_argument("--container")
    group = kill.add_mutually_exclusive_group()
    group.add_argument("--signal", help="signal name or number, e.g. SIGKILL")
    group.add_argument("--exit-code", type=int)
    return parser


def _fault(cluster: DevCluster, args: argparse.Namespace) -> None:
    if args.fault == "restart-apiserver":
        cluster.restart_apiserver()
    elif args.fault == "stop-apiserver":
        cluster.stop_component("kube-apiserver")
    elif args.fault == "start-apiserver":
        cluster.start_component("kube-apiserver")
    else:
        from airflow_provider_kbatch.devcluster import faults

        if args.fault == "drain":
            faults.drain(str(cluster.kubeconfig), args.node, timeout=args.timeout)
        elif args.fault == "uncordon":
            faults.uncordon(str(cluster.kubeconfig), args.node)
        elif args.fault == "kill":
            faults.kill_container(
                cluster.node_state_dir,
                args.namespace,
                args.pod,
                container=args.container,
                signal=args.signal,
                exit_code=args.exit_code,
            )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="kbatch devcluster: %(message)s", stream=sys.stderr)
    state_dir = args.state_dir or default_state_dir(args.name)
    cluster = DevCluster(state_dir)
    try:
        if args.command == "build":
            sys.stdout.write(f"{ensure_binaries()}\n")
        elif args.command == "up":
            cluster.nodes = args.nodes
            cluster.fast_job_backoff = args.fast_job_backoff
            started = time.monotonic()
            cluster.up(wait_seconds=args.timeout)
            sys.stdout.write(
                f"devcluster ready in {time.monotonic() - started:.1f}s ({cluster.status()['version']}, "
                f'{cluster.server}).\nUse it with:\n  eval "$(python -m airflow_provider_kbatch.devcluster '
                f'{"--state-dir " + shlex.quote(str(state_dir)) if args.state_dir else "--name " + args.name} env)"\n'
                "  kubectl get nodes\n"
                "This is a development tool: containers run as local processes, not in a sandbox.\n"
            )
        elif args.command == "down":
            cluster.down(keep_data=args.keep_data)
        elif args.command == "status":
            sys.stdout.write(json.dumps(cluster.status(), indent=2) + "\n")
        elif args.command == "env":
            for key, value in cluster.env().items():
                sys.stdout.write(f"export {key}={shlex.quote(value)}\n")
        elif args.command == "fault":
            _fault(cluster, args)
    except DevClusterError as err:
        sys.stderr.write(f"kbatch devcluster: {err}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
