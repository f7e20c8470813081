"""The people-facing command: `up` twice is harmless, `env` works for kubectl, `down` leaves
nothing running, `/version` reports the real release, and restarting the API server is survived."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "airflow_provider_kbatch.devcluster"]


def _processes_mentioning(marker: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            found.append(f"{proc.name}: {cmdline[:120]}")
    return found


def test_up_twice_env_version_restart_and_down(tmp_path):
    state = tmp_path / "cluster"
    cli = [*CLI, "--state-dir", str(state)]
    first = subprocess.run([*cli, "up"], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    try:
        pids = json.loads((state / "state.json").read_text())["pids"]
        again = subprocess.run([*cli, "up"], capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
        assert "already running" in again.stderr
        assert json.loads((state / "state.json").read_text())["pids"] == pids, "second up restarted something"

        status = json.loads(
            subprocess.run([*cli, "status"], capture_output=True, text=True, check=True).stdout
        )
        assert status["ready"] and all(status["components"].values()) and status["version"] == "v1.36.3"

        exports = subprocess.run([*cli, "env"], capture_output=True, text=True, check=True).stdout
        env = dict(os.environ)
        script = exports + "\nkubectl version -o json\n"
        version = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60)
        assert version.returncode == 0, version.stderr
        assert json.loads(version.stdout)["serverVersion"]["gitVersion"] == "v1.36.3"

        restart = subprocess.run(
            [*cli, "fault", "restart-apiserver"], capture_output=True, text=True, timeout=180
        )
        assert restart.returncode == 0, restart.stderr
        nodes = subprocess.run(
            ["bash", "-c", exports + "\nkubectl get nodes -o name"], capture_output=True, text=True
        )
        assert "node/kbatch-node-0" in nodes.stdout
    finally:
        down = subprocess.run([*cli, "down"], capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert _processes_mentioning(str(state)) == []
    assert not state.exists()


def test_a_failed_up_leaves_nothing_running(tmp_path, monkeypatch):
    from airflow_provider_kbatch.devcluster.cluster import DevCluster, DevClusterError

    cluster = DevCluster(tmp_path / "broken")
    real_command = cluster._command

    def command(component: str):
        cmd, env = real_command(component)
        if component == "node":  # a node that dies at once: up must fail, and clean up
            return [sys.executable, "-c", "import sys; sys.exit(3)"], env
        return cmd, env

    monkeypatch.setattr(cluster, "_command", command)
    try:
        with pytest.raises(DevClusterError, match="node exited"):
            cluster.up(wait_seconds=60)
        assert _processes_mentioning(str(tmp_path / "broken")) == []
        assert (tmp_path / "broken" / "logs" / "kube-apiserver.log").exists(), "logs are kept for diagnosis"
    finally:
        cluster.down()


def test_up_retries_with_new_ports_when_a_port_is_taken_before_the_component_binds_it(tmp_path, monkeypatch):
    """The CI failure this guards against: kube-controller-manager lost its port to another socket."""
    from airflow_provider_kbatch.devcluster import cluster as cluster_module
    from airflow_provider_kbatch.devcluster.ports import free_port

    squatter = socket.socket()
    squatter.bind(("127.0.0.1", free_port()))
    squatter.listen()
    taken = squatter.getsockname()[1]
    choices: list[dict[str, int]] = []
    real_free_ports = cluster_module.free_ports

    def free_ports(names):
        chosen = real_free_ports(names)
        if not choices:  # the first choice loses the controller-manager's port to the squatter
            chosen["kube-controller-manager"] = taken
        choices.append(chosen)
        return chosen

    monkeypatch.setattr(cluster_module, "free_ports", free_ports)
    cluster = cluster_module.DevCluster(tmp_path / "retry")
    try:
        cluster.up(wait_seconds=120)
        assert len(choices) == 2
        assert choices[1]["kube-controller-manager"] != taken
        assert all(cluster.running().values())
        first_try = (tmp_path / "retry" / "logs" / "kube-controller-manager.log").read_text()
        assert f"127.0.0.1:{taken}: bind: address already in use" in first_try
    finally:
        cluster.down()
        squatter.close()
    assert _processes_mentioning(str(tmp_path / "retry")) == []
