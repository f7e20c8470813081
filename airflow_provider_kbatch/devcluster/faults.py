"""Fault injection for the development cluster: drain a node, kill a container.

``drain`` cordons a Node and evicts its pods through the Eviction API (``policy/v1``), as
``kubectl drain`` does: PodDisruptionBudgets are honoured (a 429 is retried until the timeout), and
the API server marks each evicted pod with the ``DisruptionTarget`` condition (reason
``EvictionByEvictionAPI``) before deleting it, so a Job's ``podFailurePolicy`` can ``Ignore`` the
failure. Pods of DaemonSets, mirror pods and pods already Succeeded/Failed are left alone. It
returns once the evicted pods are gone (the process node reports them Failed, then deletes them).

``kill_container`` asks the process node, over its control socket ``<node state dir>/node.sock``,
to signal a running container's process group (``signal``), or to end it with a chosen exit code
(``exit_code``: the node SIGKILLs the container and reports that code, reason ``Error`` or
``Completed`` for 0, instead of 137). Only a running container can be killed.

The API server stop/restart faults belong to the harness (``DevCluster.restart_apiserver``).

CLI: ``python -m airflow_provider_kbatch.devcluster.faults drain|uncordon|kill ...``.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal as signals
import socket
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SOCKET_NAME = "node.sock"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"


class FaultError(RuntimeError):
    pass


def parse_signal(value: str | int | None) -> int | None:
    """``"SIGTERM"``, ``"term"``, ``"15"`` or ``15`` -> 15."""
    if value is None or isinstance(value, int):
        return value
    text = value.strip().upper()
    if text.isdigit():
        return int(text)
    name = text if text.startswith("SIG") else f"SIG{text}"
    try:
        return int(signals.Signals[name])
    except KeyError:
        raise FaultError(f"unknown signal {value!r}") from None


def evictable(pod: dict[str, Any]) -> bool:
    """Pods a drain evicts: not a DaemonSet's, not a mirror pod, not already finished."""
    meta = pod.get("metadata") or {}
    if MIRROR_ANNOTATION in (meta.get("annotations") or {}):
        return False
    if any(ref.get("kind") == "DaemonSet" for ref in meta.get("ownerReferences") or []):
        return False
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def _wait(check: Callable[[], list[str]], deadline: float, what: str, sleep: Callable[[float], None]) -> None:
    while True:
        left = check()
        if not left:
            return
        if time.monotonic() > deadline:
            raise FaultError(f"timed out waiting for {what}: {', '.join(sorted(left))}")
        sleep(0.5)


def _eviction(name: str, namespace: str, uid: str, grace_period_seconds: int | None) -> dict[str, Any]:
    options: dict[str, Any] = {"preconditions": {"uid": uid}}
    if grace_period_seconds is not None:
        options["gracePeriodSeconds"] = grace_period_seconds
    return {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": namespace},
        "deleteOptions": options,
    }


def _evict_all(
    core: Any,
    pending: dict[tuple[str, str], str],
    *,
    deadline: float,
    grace_period_seconds: int | None,
    sleep: Callable[[float], None],
) -> dict[tuple[str, str], str]:
    """Evict every pod of ``pending`` ((namespace, name) -> uid), retrying PDB refusals (429)."""
    from kubernetes.client.exceptions import ApiException

    evicted: dict[tuple[str, str], str] = {}
    while pending:
        blocked = []
        for (ns, name), uid in list(pending.items()):
            try:
                core.create_namespaced_pod_eviction(name, ns, _eviction(name, ns, uid, grace_period_seconds))
                evicted[(ns, name)] = uid
                log.info("evicted %s/%s", ns, name)
            except ApiException as err:
                if err.status == 429:  # a PodDisruptionBudget says not now
                    blocked.append(f"{ns}/{name}")
                    continue
                if err.status not in (404, 409):  # gone, or replaced by a new pod of that name
                    raise FaultError(f"eviction of {ns}/{name} failed: {err.status} {err.body}") from err
            del pending[(ns, name)]
        if pending:
            if time.monotonic() > deadline:
                raise FaultError(f"timed out: evictions still refused (PodDisruptionBudget?): {blocked}")
            sleep(1.0)
    return evicted


def drain(
    kubeconfig: str | Path,
    node_name: str,
    *,
    timeout: float = 120.0,
    grace_period_seconds: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """Cordon ``node_name`` and evict its pods; return ``namespace/name`` of the evicted pods."""
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        core = client.CoreV1Api(api)
        core.patch_node(node_name, {"spec": {"unschedulable": True}})
        log.info("cordoned %s", node_name)
        deadline = time.monotonic() + timeout
        listing = api.sanitize_for_serialization(
            core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node_name}")
        )
        pending = {
            (p["metadata"]["namespace"], p["metadata"]["name"]): p["metadata"]["uid"]
            for p in listing.get("items") or []
            if evictable(p)
        }
        evicted = _evict_all(
            core, pending, deadline=deadline, grace_period_seconds=grace_period_seconds, sleep=sleep
        )

        def still_there() -> list[str]:
            left = []
            for (ns, name), uid in evicted.items():
                try:
                    pod = core.read_namespaced_pod(name, ns)
                except ApiException as err:
                    if err.status == 404:
                        continue
                    raise
                if pod.metadata.uid == uid:
                    left.append(f"{ns}/{name}")
            return left

        _wait(still_there, deadline, "evicted pods to go away", sleep)
        return [f"{ns}/{name}" for ns, name in evicted]
    finally:
        api.close()


def uncordon(kubeconfig: str | Path, node_name: str) -> None:
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        client.CoreV1Api(api).patch_node(node_name, {"spec": {"unschedulable": False}})
    finally:
        api.close()


def node_request(state_dir: str | Path, request: dict[str, Any], *, timeout: float = 10.0) -> dict[str, Any]:
    """One request to the process node's control socket."""
    path = Path(state_dir) / SOCKET_NAME
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError as err:
            raise FaultError(f"cannot reach the process node at {path}: {err}") from err
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    reply = dict(json.loads(data or b"{}"))
    if not reply.get("ok"):
        raise FaultError(str(reply.get("error") or reply))
    return reply


def kill_container(
    state_dir: str | Path,
    namespace: str,
    pod: str,
    container: str | None = None,
    *,
    signal: str | int | None = None,
    exit_code: int | None = None,
) -> dict[str, Any]:
    """Kill a running container's processes with ``signal`` (default SIGKILL), or end it with
    ``exit_code``. Returns what the node did (container, pid, signal)."""
    if signal is not None and exit_code is not None:
        raise FaultError("give a signal or an exit code, not both")
    if exit_code is not None and not 0 <= exit_code <= 255:
        raise FaultError(f"exit code {exit_code} is outside 0..255")
    request = {
        "op": "kill",
        "namespace": namespace,
        "pod": pod,
        "container": container,
        "signal": parse_signal(signal),
        "exit_code": exit_code,
    }
    return node_request(state_dir, request)


def running_containers(state_dir: str | Path) -> list[dict[str, Any]]:
    """What the node runs now: namespace, pod, uid, container, pid."""
    return list(node_request(state_dir, {"op": "containers"})["containers"])


def build_parser(
    prog: str = "python -m airflow_provider_kbatch.devcluster.faults",
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="fault", required=True)
    for name, text in (
        ("drain", "cordon a node and evict its pods"),
        ("uncordon", "make a node schedulable"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("node")
        cmd.add_argument("--kubeconfig", required=True)
        if name == "drain":
            cmd.add_argument("--timeout", type=float, default=120.0)
            cmd.add_argument("--grace-period", type=int, default=None)
    kill = sub.add_parser(
        "kill", help="kill a container's processes with a signal, or end it with an exit code"
    )
    kill.add_argument("namespace")
    kill.add_argument("pod")
    kill.add_argument("--container")
    kill.add_argument("--state-dir", required=True, help="the process node's state directory")
    group = kill.add_mutually_exclusive_group()
    group.add_argument("--signal", help="name or number, e.g. SIGTERM (default SIGKILL)")
    group.add_argument("--exit-code", type=int)
    return parser


def main(argv: Iterable[str] | None = None) -> int:
    args = build_parser().parse_args(None if argv is None else list(argv))
    logging.basicConfig(level=logging.INFO, format="kbatch fault: %(message)s", stream=sys.stderr)
    try:
        if args.fault == "drain":
            evicted = drain(
                args.kubeconfig, args.node, timeout=args.timeout, grace_period_seconds=args.grace_period
            )
            sys.stdout.write(json.dumps({"evicted": evicted}) + "\n")
        elif args.fault == "uncordon":
            uncordon(args.kubeconfig, args.node)
        else:
            result = kill_container(
                args.state_dir,
                args.namespace,
                args.pod,
                args.container,
                signal=args.signal,
                exit_code=args.exit_code,
            )
            sys.stdout.write(json.dumps(result) + "\n")
    except FaultError as err:
        sys.stderr.write(f"kbatch fault: {err}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
