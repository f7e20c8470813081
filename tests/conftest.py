"""Shared fixtures: the real development cluster for integration and end-to-end tests.

``devcluster`` (session scope) starts a fresh control plane and process node (two process nodes
and one simulated node, ``devcluster/processnode/simulated.py``) in a temporary directory and
stops it at the end. Set ``KBATCH_TEST_CLUSTER_DIR`` to reuse a cluster that is
already running (``python -m airflow_provider_kbatch.devcluster --state-dir DIR up``) -- handy
while iterating.

With ``KBATCH_REQUIRE_INTEGRATION=1`` (set by ``make test`` and ``.ci/run``) a skipped
integration or e2e test is turned into a failure: they must run.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REQUIRE = os.environ.get("KBATCH_REQUIRE_INTEGRATION") == "1"
# the controller-manager's and scheduler's client QPS in the session cluster (defaults 20 and 50)
SESSION_CLIENT_QPS = 200


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = str(item.fspath)
        if f"{os.sep}integration{os.sep}" in path:
            item.add_marker(pytest.mark.integration)
        if f"{os.sep}e2e{os.sep}" in path:
            item.add_marker(pytest.mark.e2e)


def worker_group(nodeid: str) -> str:
    """The worker group of a test under ``make test``: the e2e tests, or every other test."""
    return "e2e" if nodeid.startswith("tests/e2e/") else "unit-integration"


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under ``make test TEST_WORKERS=2`` (``--dist loadgroup``) one worker runs every e2e test
    on its cluster and Airflow deployment while the other runs the unit and integration tests on a
    cluster of its own: no second deployment, and the API server restarts of
    ``test_resilience.py`` reach no other test. The groups are decided here, by directory, not by
    ``xdist_group`` marks: xdist 3.8 appends a mark's group to ``item._nodeid``, which pytest 9.2's
    ``nodeid`` no longer returns, so the marks group nothing."""
    if config.getoption("dist", None) != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByDirectory(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return worker_group(nodeid)

    return ByDirectory(config, log)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if (
        REQUIRE
        and report.skipped
        and (item.get_closest_marker("integration") or item.get_closest_marker("e2e"))
    ):
        report.outcome = "failed"
        report.longrepr = f"integration/e2e test skipped but KBATCH_REQUIRE_INTEGRATION=1: {report.longrepr}"


def wait_until(
    check: Callable[[], Any], *, timeout: float = 60, interval: float = 0.2, what: str = ""
) -> Any:
    """Poll ``check`` until it returns something truthy; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}; last value: {last!r}")


class ClusterHandle:
    """What tests get: paths, clients and a fresh-namespace helper."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.kubeconfig = Path(cluster.kubeconfig)
        self.state_dir = Path(cluster.state_dir)
        self.node_state_dir = Path(cluster.node_state_dir)
        self._api: Any = None

    def api(self) -> Any:
        from kubernetes import config

        if self._api is None:
            self._api = config.new_client_from_config(config_file=str(self.kubeconfig))
        return self._api

    def core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.api())

    def batch(self) -> Any:
        from kubernetes import client

        return client.BatchV1Api(self.api())

    def namespace(self, prefix: str = "t") -> str:
        name = f"{prefix}-{secrets.token_hex(4)}"
        self.core().create_namespace({"metadata": {"name": name}})
        wait_until(
            lambda: _sa_exists(self.core(), name), timeout=90, what=f"default service account in {name}"
        )
        return name

    def kubectl(self) -> list[str]:
        return [str(Path(self.cluster.bin_dir) / "kubectl"), f"--kubeconfig={self.kubeconfig}"]


def _sa_exists(core: Any, namespace: str) -> bool:
    from kubernetes.client.exceptions import ApiException

    try:
        core.read_namespaced_service_account("default", namespace)
        return True
    except ApiException as err:
        if err.status == 404:
            return False
        raise


@pytest.fixture(scope="session")
def devcluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHandle]:
    from airflow_provider_kbatch.devcluster.cluster import DevCluster

    reuse = os.environ.get("KBATCH_TEST_CLUSTER_DIR")
    if reuse:
        cluster = DevCluster(Path(reuse))
        if not cluster.status()["ready"]:
            cluster.fast_job_backoff = "200ms"
            cluster.simulated_nodes, cluster.client_qps = 1, SESSION_CLIENT_QPS
            cluster.up()
        handle = ClusterHandle(cluster)
        _set_conn_env(cluster)
        yield handle
        return
    # one simulated node (scale mode: pods that ask for it complete without a process; the others
    # never land there) and client rates the simulated pods' throughput needs
    cluster = DevCluster(
        tmp_path_factory.mktemp("devcluster"),
        nodes=2,
        fast_job_backoff="200ms",
        simulated_nodes=1,
        client_qps=SESSION_CLIENT_QPS,
    )
    try:
        cluster.up(wait_seconds=180)
    except Exception:
        cluster.down()
        raise
    _set_conn_env(cluster)
    try:
        yield ClusterHandle(cluster)
    finally:
        cluster.down()


def _set_conn_env(cluster: Any) -> None:
    env = cluster.env()
    os.environ["KUBECONFIG"] = env["KUBECONFIG"]
    os.environ["AIRFLOW_CONN_KUBERNETES_DEFAULT"] = env["AIRFLOW_CONN_KUBERNETES_DEFAULT"]


@pytest.fixture
def namespace(devcluster: ClusterHandle) -> str:
    return devcluster.namespace()


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)[:4000]
