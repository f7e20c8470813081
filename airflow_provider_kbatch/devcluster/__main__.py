"""``python -m airflow_provider_kbatch.devcluster up | down | status | env | build | fault | airflow ...``

A local Kubernetes control plane (real etcd, kube-apiserver, kube-controller-manager,
kube-scheduler) and a process node, for tests, the demo and DAG authors; ``airflow up | down |
status | env`` runs a real Airflow deployment on PostgreSQL against it. Development tool only:
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
from typing import Any

from airflow_provider_kbatch.devcluster.build import ensure_binaries
from airflow_provider_kbatch.devcluster.cluster import DevCluster, DevClusterError, default_state_dir
from airflow_provider_kbatch.devcluster.postgres import PostgresError
from airflow_provider_kbatch.devcluster.tools import TOOLS, tool_path

REPO = Path(__file__).resolve().parents[2]


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
    up.add_argument(
        "--kueue",
        action="store_true",
        help="also run Kueue (built from the Go module proxy) with its CRDs and webhooks; kept by later ups",
    )
    up.add_argument(
        "--simulated-nodes",
        type=int,
        default=0,
        metavar="N",
        help="scale mode: also register N simulated nodes (label and taint kbatch.io/simulated-node=true) "
        "whose pods complete without a process, as the kbatch.io/simulate annotation says; kept by later ups",
    )
    up.add_argument(
        "--client-qps",
        type=int,
        metavar="QPS",
        help="scale mode: the controller-manager's and the scheduler's client QPS (defaults 20 and 50), e.g. 500",
    )
    up.add_argument("--timeout", type=float, default=180, help="seconds to wait for readiness")
    down = sub.add_parser("down", help="stop everything the cluster started")
    down.add_argument("--keep-data", action="store_true", help="keep etcd data and volumes for the next up")
    sub.add_parser("status", help="print what runs, as JSON")
    sub.add_parser("env", help="print shell exports for kubectl, the Python client and Airflow")
    build = sub.add_parser("build", help="only build (or find cached) control plane binaries")
    build.add_argument(
        "--tool",
        action="append",
        default=[],
        choices=sorted(TOOLS),
        help="also build this Go tool (repeatable)",
    )
    tool = sub.add_parser(
        "tool", help="print the path of a Go tool (helm, promtool, kueue), building it if needed"
    )
    tool.add_argument("tool_name", choices=sorted(TOOLS))
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
    _airflow_parser(sub)
    return parser


def _airflow_parser(sub: Any) -> None:
    airflow = sub.add_parser(
        "airflow",
        help="a real Airflow 3 deployment (api-server, scheduler, dag-processor, triggerer) on PostgreSQL",
    )
    commands = airflow.add_subparsers(dest="airflow_command", required=True)
    helps = {
        "up": "start PostgreSQL and the Airflow components against this (running) cluster",
        "down": "stop every process of the deployment and PostgreSQL (its logs stay)",
        "status": "print what runs, as JSON",
        "env": "print shell exports for the airflow CLI against the deployment",
    }
    for name, text in helps.items():
        command = commands.add_parser(name, help=text)
        command.add_argument(
            "--state-dir",
            dest="airflow_dir",
            type=Path,
            help="the deployment's directory: AIRFLOW_HOME, logs, deployment.json "
            "(default: airflow/<--name> under the kbatch cache)",
        )
    up = commands.choices["up"]
    up.add_argument("--dags-folder", type=Path, default=REPO / "dags", help="default: the repository's dags/")
    up.add_argument("--parallelism", type=int, default=4, help="[core] parallelism (LocalExecutor workers)")
    up.add_argument(
        "--timeout", type=float, default=300, help="seconds to wait until all components are healthy"
    )


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


def _airflow(cluster: DevCluster, args: argparse.Namespace) -> None:
    from airflow_provider_kbatch.devcluster import airflowdeploy

    home = (args.airflow_dir or airflowdeploy.default_home(args.name)).resolve()
    where = f"--state-dir {shlex.quote(str(home))}"
    if args.airflow_command == "up":
        if not cluster.status()["ready"]:
            raise DevClusterError(
                f"the cluster in {cluster.state_dir} is not running: start it first with "
                f"`python -m airflow_provider_kbatch.devcluster --state-dir {shlex.quote(str(cluster.state_dir))} up`"
            )
        deployment, _ = airflowdeploy.up(
            home,
            dags_folder=args.dags_folder.resolve(),
            cluster_env=cluster.env(),
            timeout=args.timeout,
            parallelism=args.parallelism,
        )
        sys.stdout.write(
            airflowdeploy.describe(deployment) + f"  kubernetes_default: the cluster in {cluster.state_dir}\n"
            f'Use the airflow CLI with it: eval "$(python -m airflow_provider_kbatch.devcluster airflow env {where})"\n'
            f"Stop it: python -m airflow_provider_kbatch.devcluster airflow down {where}\n"
        )
        return
    if args.airflow_command == "down":
        if not airflowdeploy.down(home):
            sys.stderr.write(f"kbatch devcluster: no Airflow deployment in {home}\n")
        return
    attached = airflowdeploy.AirflowDeployment.attach(home)
    if args.airflow_command == "status":
        status = attached.status() if attached else {"home": str(home), "running": False}
        sys.stdout.write(json.dumps(status, indent=2) + "\n")
    elif args.airflow_command == "env":
        if attached is None:
            raise DevClusterError(f"no Airflow deployment in {home}: `airflow up {where}` starts one")
        for key, value in airflowdeploy.shell_env(attached).items():
            sys.stdout.write(f"export {key}={shlex.quote(value)}\n")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="kbatch devcluster: %(message)s", stream=sys.stderr)
    state_dir = args.state_dir or default_state_dir(args.name)
    cluster = DevCluster(state_dir)
    try:
        if args.command == "build":
            sys.stdout.write(f"{ensure_binaries()}\n")
            for name in args.tool:
                sys.stdout.write(f"{tool_path(name)}\n")
        elif args.command == "tool":
            sys.stdout.write(f"{tool_path(args.tool_name)}\n")
        elif args.command == "up":
            cluster.nodes = args.nodes
            cluster.fast_job_backoff = args.fast_job_backoff
            cluster.kueue = args.kueue
            cluster.simulated_nodes = args.simulated_nodes
            cluster.client_qps = args.client_qps
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
        elif args.command == "airflow":
            _airflow(cluster, args)
    except (DevClusterError, PostgresError, AssertionError) as err:  # the deployment's checks assert
        sys.stderr.write(f"kbatch devcluster: {err}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
