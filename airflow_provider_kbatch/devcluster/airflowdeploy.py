"""A real Airflow 3 deployment on PostgreSQL against the development cluster: api-server,
scheduler (LocalExecutor), dag-processor and triggerer as separate processes sharing one
``AIRFLOW_HOME``, with the cluster's ``kubernetes_default`` connection in their environment.
This module holds the process lifecycle (:class:`AirflowDeployment`: start, stop, attach,
status, with the psutil helpers of :mod:`~airflow_provider_kbatch.devcluster.proctree`) and the
CLI's steps (:func:`up`, :func:`down`, :func:`shell_env`, :func:`describe`). The settings are
:mod:`~airflow_provider_kbatch.devcluster.airflowconfig`'s; the calls on a running deployment
(CLI, REST API, metadata database, logs) are the
:class:`~airflow_provider_kbatch.devcluster.airflowclient.DeploymentClient` it inherits. The
public names of both are importable from here too.

The end-to-end tests share one per session (the ``airflow_deployment`` fixture of
``tests/e2e/conftest.py``); a person starts one with ``make airflow-up``, that is
``python -m airflow_provider_kbatch.devcluster [--state-dir CLUSTER] airflow up [--state-dir DIR]``.
It runs ``airflow`` as subprocesses (the ``bin/airflow`` next to this interpreter) and imports
neither Airflow nor pytest::

    deployment = AirflowDeployment(home=..., dags_folder=..., extra_env=cluster.env())
    deployment.start()
    deployment.wait_dag("my_dag")
    backfill_id = deployment.backfill("my_dag", "2026-01-01", "2026-01-05", conf={...})
    deployment.unpause("my_dag")
    runs = deployment.wait_runs("my_dag", 5, backfill_id=backfill_id, timeout=300)
    deployment.stop()

Deliberate choices (those of the settings are in
:mod:`~airflow_provider_kbatch.devcluster.airflowconfig`):

* PostgreSQL, as production uses (:mod:`airflow_provider_kbatch.devcluster.postgres`: its own
  throwaway server on a loopback port, started before ``airflow db migrate`` and stopped after
  the last Airflow process).
* Every process the deployment starts carries a marker in its environment. Task processes run
  in process groups of their own (the task supervisor calls ``setpgid``) and may be re-parented
  when their parent dies, so :meth:`AirflowDeployment.stop` finds them by that marker as well as
  by parentage from the components (known by pid and start time) and signals the components'
  process groups: SIGTERM, a grace period, SIGKILL, and an error if anything is still alive.
  It works from another process too (``airflow down`` reads ``deployment.json``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from airflow_provider_kbatch.devcluster import proctree
from airflow_provider_kbatch.devcluster.airflowclient import DeploymentClient, Run, overlapping
from airflow_provider_kbatch.devcluster.airflowconfig import (
    COMPONENTS,
    LOCAL_SETTINGS,
    MARKER_ENV,
    REPO,
    STATE_FILE,
    TERMINAL_RUN_STATES,
    DeploymentConfig,
    healthy,
)
from airflow_provider_kbatch.devcluster.build import cache_root
from airflow_provider_kbatch.devcluster.postgres import USER, PostgresServer

__all__ = [
    "COMPONENTS",
    "MARKER_ENV",
    "REPO",
    "STATE_FILE",
    "TERMINAL_RUN_STATES",
    "AirflowDeployment",
    "DeploymentClient",
    "DeploymentConfig",
    "Run",
    "default_home",
    "describe",
    "down",
    "healthy",
    "overlapping",
    "shell_env",
    "up",
]

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- the deployment
@dataclass
class AirflowDeployment(DeploymentClient):
    """An Airflow deployment of separate processes sharing one ``AIRFLOW_HOME``, on its own
    PostgreSQL server.

    ``start()`` starts PostgreSQL, migrates the database, starts the four components and waits
    until the api-server reports all of them healthy; ``stop()`` leaves no process behind.
    """

    home: Path
    dags_folder: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    parallelism: int = 4
    use_job_schedule: bool = False
    config: DeploymentConfig | None = None  # given when attaching to a running deployment
    postgres: PostgresServer = field(default_factory=PostgresServer)
    pids: dict[str, int] = field(default_factory=dict)
    created: dict[str, float] = field(default_factory=dict)  # pid's start time: no pid reuse
    procs: dict[str, subprocess.Popen[bytes]] = field(init=False, default_factory=dict)
    timings: dict[str, float] = field(init=False, default_factory=dict)
    startup_seconds: float | None = field(init=False, default=None)
    stop_seconds: float | None = field(init=False, default=None)
    killed: list[str] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.home = Path(self.home)
        if self.config is None:
            self.config = DeploymentConfig.new(
                self.home,
                Path(self.dags_folder),
                database_port=self.postgres.port,
                parallelism=self.parallelism,
                use_job_schedule=self.use_job_schedule,
            )
        self.cfg: DeploymentConfig = self.config
        self.env = self.cfg.env(os.environ, self.extra_env)

    # ---------------------------------------------------------------- paths
    @property
    def marker(self) -> str:
        return self.cfg.marker

    @property
    def port(self) -> int:
        return self.cfg.api_port

    @property
    def state_file(self) -> Path:
        return self.home / STATE_FILE

    # ---------------------------------------------------------------- lifecycle
    def start(self, *, timeout: float = 300) -> None:
        """PostgreSQL, ``airflow db migrate``, the components; wait until all are healthy.

        ``timings`` gets the seconds of each step (``postgres``, ``migrate``, ``components``).
        A failed start stops what it started."""
        started = time.monotonic()
        self.home.mkdir(parents=True, exist_ok=True)
        local_settings = self.home / "config" / "airflow_local_settings.py"
        if self.cfg.preload:
            local_settings.parent.mkdir(exist_ok=True)
            local_settings.write_text(LOCAL_SETTINGS)
        else:
            local_settings.unlink(missing_ok=True)
        try:
            self.postgres.start(timeout=min(timeout, 90))
            self.timings["postgres"] = time.monotonic() - started
            self.save_state()
            self.run("db", "migrate", timeout=timeout)
            self.timings["migrate"] = time.monotonic() - started - self.timings["postgres"]
            for component in COMPONENTS:
                self._start_component(component)
            self.save_state()
            remaining = timeout - (time.monotonic() - started)
            self._wait(self._healthy, timeout=max(remaining, 10), what="all components healthy")
        except BaseException:
            with contextlib.suppress(Exception):
                self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        self.timings["components"] = self.startup_seconds - self.timings["postgres"] - self.timings["migrate"]
        log.info(
            "Airflow deployment ready at %s in %.1fs (PostgreSQL %.1fs, db migrate %.1fs, components %.1fs)",
            self.url,
            self.startup_seconds,
            self.timings["postgres"],
            self.timings["migrate"],
            self.timings["components"],
        )

    def _start_component(self, component: str) -> None:
        args = [component]
        if component in ("scheduler", "triggerer"):
            args.append("--skip-serve-logs")
        with self.component_log(component).open("ab") as out:
            proc = subprocess.Popen(
                [self.cfg.airflow, *args],
                env=self.env,
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs[component] = proc
        self.pids[component] = proc.pid
        with contextlib.suppress(psutil.Error):
            self.created[component] = psutil.Process(proc.pid).create_time()
        log.info("started airflow %s (pid %s, log %s)", component, proc.pid, self.component_log(component))

    def stop(self, *, grace: float = 20) -> None:
        """Stop everything: SIGTERM the components (they stop their own workers), then SIGTERM
        their process groups and every process left, and SIGKILL what is still alive after
        ``grace`` seconds in all; then PostgreSQL. Raises if an Airflow process survives that."""
        stopping = time.monotonic()
        victims = self._processes()
        roots = self._roots()
        for proc in roots:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGTERM)
        alive = proctree.wait_gone(victims, grace / 2, reap=self.procs.values())
        alive = proctree.unique([*alive, *self._processes()])
        if alive:
            for proc in roots:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGTERM)
            for victim in alive:
                with contextlib.suppress(psutil.Error):
                    victim.send_signal(signal.SIGTERM)
            alive = proctree.wait_gone(alive, grace / 2, reap=self.procs.values())
        # late children and orphans re-parented while we waited
        alive = proctree.unique([*alive, *self._processes()])
        self.killed = [f"{p.pid} {proctree.cmdline(p)}" for p in alive]
        for victim in alive:
            with contextlib.suppress(psutil.Error):
                victim.kill()
        proctree.wait_gone(alive, 10, reap=self.procs.values())
        left = [f"{p.pid} {proctree.cmdline(p)}" for p in self._processes()]
        self.postgres.stop()
        self.pids.clear()
        self.created.clear()
        self.state_file.unlink(missing_ok=True)
        self.stop_seconds = time.monotonic() - stopping
        if left:
            raise RuntimeError("Airflow processes survived SIGKILL:\n" + "\n".join(left))
        if self.killed:
            warnings.warn(
                f"Airflow processes ignored SIGTERM for {grace}s and were killed: {self.killed}", stacklevel=2
            )

    def _roots(self) -> list[psutil.Process]:
        """The live component processes: a recorded pid counts only while it is the process
        started then (same start time). Not by marker: Airflow's ``setproctitle`` overwrites
        the environment the kernel shows for some of them."""
        roots = []
        for component, pid in self.pids.items():
            child = self.procs.get(component)
            if child is not None and child.poll() is not None:
                continue  # our own child, exited and reaped: its pid may be someone else's now
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if child is not None or abs(proc.create_time() - self.created.get(component, -1.0)) < 0.05:
                    roots.append(proc)
        return [p for p in roots if proctree.alive(p)]

    def _processes(self) -> list[psutil.Process]:
        """Every live process started by this deployment: by marker, process group and parentage."""
        found: dict[int, psutil.Process] = {}
        for root in self._roots():
            found[root.pid] = root
            with contextlib.suppress(psutil.Error):
                found.update({c.pid: c for c in root.children(recursive=True)})
        for proc in psutil.process_iter():
            if proc.pid != os.getpid() and self._marked(proc):
                found[proc.pid] = proc
        return [p for p in found.values() if proctree.alive(p)]

    def _marked(self, proc: psutil.Process) -> bool:
        try:
            return bool(proc.environ().get(MARKER_ENV) == self.marker)
        except psutil.Error:
            return False

    # ---------------------------------------------------------------- state (for another process)
    def save_state(self) -> None:
        """``deployment.json`` in the home: what :meth:`attach` needs to report on and stop it."""
        state = {
            "config": self.cfg.to_json(),
            "extra_env": self.extra_env,
            "pids": self.pids,
            "created": self.created,
            "postgres": self.postgres.state(),
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        tmp.chmod(0o600)  # it holds the api-server's secrets
        tmp.replace(self.state_file)

    @classmethod
    def attach(cls, home: Path) -> AirflowDeployment | None:
        """The deployment whose state is in ``home``, started by another process; None if none."""
        try:
            state = json.loads((Path(home) / STATE_FILE).read_text())
        except FileNotFoundError:
            return None
        config = DeploymentConfig.from_json(state["config"])
        return cls(
            home=config.home,
            dags_folder=config.dags_folder,
            extra_env=dict(state.get("extra_env", {})),
            parallelism=config.parallelism,
            use_job_schedule=config.use_job_schedule,
            config=config,
            postgres=PostgresServer.from_state(state["postgres"]),
            pids={k: int(v) for k, v in state.get("pids", {}).items()},
            created={k: float(v) for k, v in state.get("created", {}).items()},
        )

    def status(self) -> dict[str, Any]:
        alive = {p.pid for p in self._roots()}
        return {
            "running": bool(alive),
            "home": str(self.home),
            "url": self.url,
            "dags_folder": str(self.cfg.dags_folder),
            "database": self.cfg.sql_alchemy_conn,
            "postgres": self.postgres.running(),
            "components": {c: self.pids.get(c) in alive for c in COMPONENTS},
            "health": self.health(),
        }


# ---------------------------------------------------------------- for people: the CLI's steps
def default_home(name: str = "default") -> Path:
    """Where ``airflow up`` keeps a deployment when no ``--state-dir`` is given."""
    return cache_root() / "airflow" / name


def up(
    home: Path,
    *,
    dags_folder: Path,
    cluster_env: Mapping[str, str],
    timeout: float = 300,
    parallelism: int = 4,
) -> tuple[AirflowDeployment, bool]:
    """Start a deployment in ``home`` unless one is running there already (healthy); returns it
    and whether it was started now. A deployment found there half-running is stopped first."""
    existing = AirflowDeployment.attach(home)
    if existing is not None:
        if healthy(existing.health()):
            return existing, False
        log.info("the Airflow deployment in %s is not healthy: stopping what is left of it", home)
        existing.stop()
    deployment = AirflowDeployment(
        home=home, dags_folder=dags_folder, extra_env=dict(cluster_env), parallelism=parallelism
    )
    deployment.start(timeout=timeout)
    return deployment, True


def down(home: Path) -> bool:
    """Stop the deployment in ``home`` (its processes and PostgreSQL); False if none was there.
    The home (logs, ``airflow.cfg``) stays."""
    deployment = AirflowDeployment.attach(home)
    if deployment is None:
        return False
    deployment.stop()
    return True


def shell_env(deployment: AirflowDeployment) -> dict[str, str]:
    """What a shell needs to run the ``airflow`` CLI against the deployment."""
    env = {"AIRFLOW_HOME": str(deployment.home), **deployment.extra_env, **deployment.cfg.airflow_settings()}
    env["PATH"] = deployment.env["PATH"]
    return env


def describe(deployment: AirflowDeployment) -> str:
    """Where to find it and how to log in, for the person who ran ``airflow up``."""
    pg = deployment.postgres
    timings = deployment.timings
    lines = []
    if deployment.startup_seconds is not None:
        lines.append(
            f"Airflow deployment ready in {deployment.startup_seconds:.1f}s (PostgreSQL "
            f"{timings['postgres']:.1f}s, db migrate {timings['migrate']:.1f}s, components {timings['components']:.1f}s)."
        )
    else:
        lines.append("Airflow deployment already running.")
    lines += [
        f"  UI and REST API: {deployment.url}",
        "  login: none -- the simple auth manager makes every user an admin (loopback only);",
        f"         REST API tokens from {deployment.url}/auth/token",
        f"  metadata database: {deployment.cfg.sql_alchemy_conn}  (psql -h 127.0.0.1 -p {pg.port} -U {USER})",
        f"  DAGs folder: {deployment.cfg.dags_folder}",
        f"  home and logs: {deployment.home}",
    ]
    return "\n".join(lines) + "\n"
