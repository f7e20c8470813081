"""The development cluster: a real etcd, kube-apiserver, kube-controller-manager and
kube-scheduler, plus the process node standing in for the kubelet.

Everything runs as background processes on loopback with free ports, under one state directory
(``<cache>/devcluster/<name>`` by default). ``up`` is idempotent; ``down`` stops every process it
started, including container processes the node may have left behind.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_kbatch.devcluster import kueue as kueue_setup
from airflow_provider_kbatch.devcluster.bootstrap import STORAGE_CLASS, bootstrap
from airflow_provider_kbatch.devcluster.build import cache_root, ensure_binaries, kubernetes_version
from airflow_provider_kbatch.devcluster.components import (
    COMPONENTS,
    DEVCLUSTER_ID_ENV,
    admin_kubeconfig,
    component_command,
    scheduler_config,
)
from airflow_provider_kbatch.devcluster.pki import ensure_pki
from airflow_provider_kbatch.devcluster.ports import free_ports

log = logging.getLogger(__name__)

SIMULATED_NODE_PREFIX = "kbatch-sim-"

# Kept here for the harness's users (benchmarks/run.py imports COMPONENTS from this module).
__all__ = ["COMPONENTS", "STORAGE_CLASS", "DevCluster", "DevClusterError", "default_state_dir"]


class DevClusterError(RuntimeError):
    pass


def default_state_dir(name: str = "default") -> Path:
    return cache_root() / "devcluster" / name


def _pid_alive(pid: int, marker: str) -> bool:
    """True when ``pid`` runs and its command line mentions ``marker`` (guards against pid reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return False
    if stat and stat[0] == "Z":
        return False
    # Right after fork/exec the command line can read empty for a moment: that is still ours.
    return not cmdline or marker.encode() in cmdline


@dataclass
class DevCluster:
    """Handle on one development cluster living in ``state_dir``."""

    state_dir: Path = field(default_factory=default_state_dir)
    nodes: int = 1
    fast_job_backoff: str | None = None
    node_cpu: str = "8"
    node_memory: str = "16Gi"
    kueue: bool = False  # also run Kueue (its CRDs, webhooks and controller manager): see kueue.py
    # scale mode: simulated nodes (pods complete without a process: processnode/simulated.py) and
    # the controller-manager's and scheduler's client QPS raised (defaults 20 and 50)
    simulated_nodes: int = 0
    client_qps: int | None = None

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir).resolve()
        self._children: dict[str, subprocess.Popen[bytes]] = {}  # started by this process

    # ---------------------------------------------------------------- paths and state
    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def node_state_dir(self) -> Path:
        return self.state_dir / "node"

    @property
    def _state_file(self) -> Path:
        return self.state_dir / "state.json"

    def _load(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self._state_file.read_text()))
        except FileNotFoundError:
            return {}

    def _save(self, state: dict[str, Any]) -> None:
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        tmp.replace(self._state_file)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self._load()['ports']['kube-apiserver']}"

    @property
    def token(self) -> str:
        return str(self._load()["token"])

    @property
    def bin_dir(self) -> Path:
        return Path(self._load()["bin_dir"])

    def _components(self, state: dict[str, Any] | None = None) -> tuple[str, ...]:
        """The start order: the control plane and the node, then Kueue when the cluster has it."""
        with_kueue = self.kueue or bool((self._load() if state is None else state).get("kueue"))
        return (*COMPONENTS, "kueue") if with_kueue else COMPONENTS

    # ---------------------------------------------------------------- lifecycle
    def running(self) -> dict[str, bool]:
        state = self._load()
        pids = state.get("pids", {})
        alive = {}
        for c in self._components(state):
            child = self._children.get(c)
            if child is not None and child.pid == pids.get(c):
                alive[c] = child.poll() is None  # our own child: no guessing from /proc
            else:
                alive[c] = bool(pids.get(c)) and _pid_alive(pids[c], str(self.state_dir))
        return alive

    def up(self, *, wait_seconds: float = 120) -> None:
        """Start everything that is not running and wait until the cluster is ready."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        alive = self.running()
        if all(alive.values()) and self._ready_quick():
            log.info("devcluster in %s is already running", self.state_dir)
            return
        if any(alive.values()):
            log.info("devcluster in %s is partly running (%s): restarting it", self.state_dir, alive)
            self.down(keep_data=True)
        try:
            self._start_all(wait_seconds)
        except DevClusterError as error:
            # Ports are chosen outside the ephemeral range, but another program may still bind
            # one between our choice and the component's bind. New ports, one more try.
            if "address already in use" not in str(error):
                raise
            log.warning("devcluster: a port was taken while starting; retrying with new ports")
            self._start_all(wait_seconds)

    def _start_all(self, wait_seconds: float) -> None:
        started = time.monotonic()
        bin_dir = ensure_binaries()
        state = self._load()
        state.setdefault("id", secrets.token_hex(8))
        state.setdefault("token", secrets.token_hex(16))
        state["bin_dir"] = str(bin_dir)
        state["version"] = kubernetes_version()
        state["nodes"] = [f"kbatch-node-{i}" for i in range(self.nodes)]
        state["fast_job_backoff"] = self.fast_job_backoff
        # kept by a later `up` that does not ask for them, like Kueue
        self.simulated_nodes = self.simulated_nodes or len(state.get("simulated_nodes") or ())
        state["simulated_nodes"] = [f"{SIMULATED_NODE_PREFIX}{i}" for i in range(self.simulated_nodes)]
        state["client_qps"] = self.client_qps = self.client_qps or state.get("client_qps")
        state["kueue"] = self.kueue = self.kueue or bool(state.get("kueue"))  # kept by a later `up`
        ports = (
            "etcd",
            "etcd-peer",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kubelet",
        )
        state["ports"] = free_ports(ports + (kueue_setup.PORTS if self.kueue else ()))
        state["pids"] = {}
        self._save(state)
        self._write_files(state)
        try:
            for component in self._components(state):
                if component == "kueue":
                    self._prepare_kueue(state)
                self._start(component)
                if component == "etcd":
                    self._wait(lambda: self._port_open(state["ports"]["etcd"]), "etcd", 30)
                if component == "kube-apiserver":
                    self._wait(self._ready_quick, "kube-apiserver /readyz", 90)
                    bootstrap(self.kubeconfig)
                if component == "kueue":
                    self._wait(
                        lambda: kueue_setup.ready(state["ports"]["kueue-health"]), "Kueue /readyz", 120
                    )
                    kueue_setup.install_webhooks(self.kubeconfig, self._kueue_objects(state)[1])
            deadline = max(10.0, wait_seconds - (time.monotonic() - started))
            self._wait(self._nodes_ready, "node Ready and default service account", deadline)
        except BaseException:
            self.down(keep_data=True)  # a failed up leaves nothing running (logs and data stay)
            raise
        log.info("devcluster ready in %.1fs", time.monotonic() - started)

    def down(self, *, keep_data: bool = False) -> None:
        """Stop every process of the cluster; remove its state unless ``keep_data``."""
        state = self._load()
        pids = state.get("pids", {})
        for component in reversed(self._components(state)):
            pid = pids.get(component)
            if pid and _pid_alive(pid, str(self.state_dir)):
                self._terminate(pid, grace=20 if component == "node" else 10)
        if state.get("id"):
            self._sweep_containers(state["id"])
        if keep_data:
            state["pids"] = {}
            if self._state_file.exists():
                self._save(state)
        else:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def stop_component(self, component: str) -> None:
        pid = self._load().get("pids", {}).get(component)
        if pid and _pid_alive(pid, str(self.state_dir)):
            self._terminate(pid, grace=10)

    def start_component(self, component: str, *, wait_seconds: float = 90) -> None:
        self._start(component)
        if component == "kube-apiserver":
            self._wait(self._ready_quick, "kube-apiserver /readyz", wait_seconds)

    def restart_apiserver(self) -> None:
        self.stop_component("kube-apiserver")
        self.start_component("kube-apiserver")

    def status(self) -> dict[str, Any]:
        state = self._load()
        return {
            "state_dir": str(self.state_dir),
            "version": state.get("version"),
            "server": f"https://127.0.0.1:{state['ports']['kube-apiserver']}" if state.get("ports") else None,
            "kubeconfig": str(self.kubeconfig),
            "components": self.running(),
            "ready": bool(state.get("ports")) and self._ready_quick(),
        }

    def env(self) -> dict[str, str]:
        """Environment for kubectl, the Python client and Airflow's ``kubernetes_default`` connection."""
        conn = {"conn_type": "kubernetes", "extra": {"kube_config_path": str(self.kubeconfig)}}
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "AIRFLOW_CONN_KUBERNETES_DEFAULT": json.dumps(conn),
        }

    # ---------------------------------------------------------------- internals
    def _kueue_objects(self, state: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Kueue's CRDs and webhook configurations, calling its webhook server on loopback."""
        module = kueue_setup.module_dir()
        base_url = f"https://127.0.0.1:{state['ports']['kueue-webhook']}"
        ca = (self.state_dir / "kueue" / "webhook-certs" / "tls.crt").read_bytes()
        return kueue_setup.crds(module, base_url, ca), kueue_setup.webhook_configurations(
            module, base_url, ca
        )

    def _prepare_kueue(self, state: dict[str, Any]) -> None:
        """Before the manager starts: its binary, certificates, configuration and established CRDs."""
        from airflow_provider_kbatch.devcluster.tools import tool_path

        state["kueue_bin"] = str(tool_path("kueue"))
        saved = self._load()  # with the pids of what started since `state` was read: keep them
        saved["kueue_bin"] = state["kueue_bin"]
        self._save(saved)
        directory = self.state_dir / "kueue"
        directory.mkdir(exist_ok=True)
        ports = state["ports"]
        kueue_setup.prepare(directory, webhook_port=ports["kueue-webhook"], health_port=ports["kueue-health"])
        crds = self._kueue_objects(state)[0]
        kueue_setup.install_crds(self.kubeconfig, crds)
        names = [crd["metadata"]["name"] for crd in crds]
        self._wait(
            lambda: kueue_setup.crds_established(self.kubeconfig, names), "Kueue's CRDs established", 60
        )

    def _write_files(self, state: dict[str, Any]) -> None:
        pki = ensure_pki(self.state_dir / "pki")
        (self.state_dir / "logs").mkdir(exist_ok=True)
        tokens = self.state_dir / "pki" / "tokens.csv"
        tokens.write_text(f'{state["token"]},admin,admin,"system:masters"\n')
        tokens.chmod(0o600)
        server = f"https://127.0.0.1:{state['ports']['kube-apiserver']}"
        kubeconfig = admin_kubeconfig(server, pki["ca_cert"].read_bytes(), state["token"])
        self.kubeconfig.write_text(json.dumps(kubeconfig, indent=2))
        self.kubeconfig.chmod(0o600)
        if state.get("client_qps"):
            config = scheduler_config(self.kubeconfig, int(state["client_qps"]))
            (self.state_dir / "scheduler-config.json").write_text(json.dumps(config, indent=2))

    def _command(self, component: str) -> tuple[list[str], dict[str, str]]:
        if component not in self._components():
            known = ", ".join(self._components())
            raise DevClusterError(f"unknown component {component!r}; known: {known}")
        return component_command(
            component,
            self._load(),
            state_dir=self.state_dir,
            kubeconfig=self.kubeconfig,
            node_state_dir=self.node_state_dir,
            node_cpu=self.node_cpu,
            node_memory=self.node_memory,
            environ=os.environ,
        )

    def _start(self, component: str) -> None:
        cmd, env = self._command(component)
        logfile = self.state_dir / "logs" / f"{component}.log"
        with open(logfile, "ab") as out:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.state_dir,
                start_new_session=True,
            )
        self._children[component] = proc
        state = self._load()
        state.setdefault("pids", {})[component] = proc.pid
        self._save(state)
        log.info("started %s (pid %s, log %s)", component, proc.pid, logfile)

    def _terminate(self, pid: int, *, grace: float) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                return
            except PermissionError:
                os.kill(pid, sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                    if done:
                        return
                except ChildProcessError:
                    if not _pid_alive(pid, str(self.state_dir)):
                        return
                time.sleep(0.1)

    def _sweep_containers(self, cluster_id: str) -> None:
        """Kill any process still carrying this cluster's id in its environment."""
        marker = f"{DEVCLUSTER_ID_ENV}={cluster_id}".encode()
        me = os.getpid()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == me:
                continue
            try:
                if marker in (proc / "environ").read_bytes().split(b"\0"):
                    os.kill(int(proc.name), signal.SIGKILL)
                    log.warning("killed leftover process %s of the devcluster", proc.name)
            except (OSError, ProcessLookupError):
                continue

    def _port_open(self, port: int) -> bool:
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex(("127.0.0.1", port)) == 0

    def _get(self, path: str) -> tuple[int, bytes]:
        ctx = ssl.create_default_context(cafile=str(self.state_dir / "pki" / "ca.crt"))
        req = urllib.request.Request(self.server + path, headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=3, context=ctx) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()
        except (OSError, urllib.error.URLError):
            return 0, b""

    def _ready_quick(self) -> bool:
        try:
            return self._get("/readyz")[0] == 200
        except (KeyError, FileNotFoundError):
            return False

    def _nodes_ready(self) -> bool:
        code, body = self._get("/api/v1/nodes")
        if code != 200:
            return False
        ready = {
            n["metadata"]["name"]
            for n in json.loads(body).get("items", [])
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in n.get("status", {}).get("conditions", [])
            )
        }
        state = self._load()
        if not set(state["nodes"]) | set(state.get("simulated_nodes") or ()) <= ready:
            return False
        return self._get("/api/v1/namespaces/default/serviceaccounts/default")[0] == 200

    def _wait(self, check: Callable[[], bool], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            for component, alive in self.running().items():
                if self._load().get("pids", {}).get(component) and not alive:
                    raise DevClusterError(
                        f"{component} exited while waiting for {what}; its log:\n" + self.log_tail(component)
                    )
            time.sleep(0.2)
        raise DevClusterError(f"timed out after {timeout:.0f}s waiting for {what}")

    def log_tail(self, component: str, lines: int = 30) -> str:
        path = self.state_dir / "logs" / f"{component}.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"
