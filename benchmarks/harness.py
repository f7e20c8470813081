"""What the side-by-side benchmarks share: the test ground (a development cluster, a real Airflow
deployment and an ``airflow dags test`` home, all with the DAGs of ``benchmarks/dags``), DAG runs
started and read back in either, the pods of a namespace recorded from a watch, the API server's
``/metrics``, process-tree memory and CPU, and the table printed with kbatch / official ratios.

Nothing here judges a figure: the items (``benchmarks/latency.py``, ``waiting.py``, ``fanout.py``,
``retry.py``) measure, ``benchmarks/run.py`` chooses what runs, ``tests/e2e/test_bench_smoke.py``
checks that every item still produces its figures at the smallest size.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import json
import os
import re
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
BENCH_DAGS = REPO / "benchmarks" / "dags"
OPERATORS = ("kbatch", "official")
DAG_IDS = {"kbatch": "kbatch_bench_kbatch", "official": "kbatch_bench_official"}
#: The official operator's try fails with this when its pod discovery (``get_pods``: up to
#: ``discover_pods_retry_number`` + 1 = 4 LISTs back to back, no pause) ends before the Job
#: controller made the pods -- under load, a try that has nothing to do with the figure.
OFFICIAL_POD_DISCOVERY = "No pods running with labels"
#: Runs of the official operator lost to its pod discovery that an item measures again.
LOST_RUNS = 2


# ---------------------------------------------------------------- time and numbers
def utc(value: Any) -> datetime.datetime:
    """A database timestamp (PostgreSQL datetime or SQLite text) as an aware UTC datetime."""
    parsed = value if isinstance(value, datetime.datetime) else datetime.datetime.fromisoformat(str(value))
    return parsed.replace(tzinfo=datetime.timezone.utc) if parsed.tzinfo is None else parsed


def epoch(value: Any) -> float:
    return utc(value).timestamp()


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


# ---------------------------------------------------------------- a DAG run, wherever it ran
@dataclass
class TaskRow:
    task_id: str
    map_index: int
    state: str | None
    try_number: int
    start: float | None
    end: float | None


@dataclass
class RunResult:
    """One finished DAG run of a benchmark DAG: its task instances and the pods it made."""

    operator: str
    run_id: str
    state: str
    start: float
    end: float
    tasks: list[TaskRow]
    pods: list[PodRecord] = field(default_factory=list)
    jobs_done: dict[str, float] = field(default_factory=dict)  # Job name -> seen finished (epoch)

    @property
    def wall(self) -> float:
        return self.end - self.start

    def stages(self) -> list[TaskRow]:
        return [t for t in self.tasks if t.task_id == "stage"]

    def exit_to_end(self) -> list[float]:
        """Per stage task instance: its last container's own exit timestamp -> the task's
        end_date (seconds). A task instance whose pods left no timestamp is left out."""
        last: dict[int, float] = {}
        for pod in self.pods:
            if pod.exit_ns is not None and pod.key is not None:
                last[pod.key] = max(last.get(pod.key, 0.0), pod.exit_ns / 1e9)
        return [t.end - last[t.map_index] for t in self.stages() if t.end is not None and t.map_index in last]

    def job_done_to_end(self) -> list[float]:
        """Per stage task instance: the moment a watch of this benchmark saw its last Job
        finished (Complete or Failed condition True) -> the task's end_date (seconds). The
        part of "exit -> task end" that is the operator's, not the Job controller's."""
        done: dict[int, float] = {}
        for pod in self.pods:
            seen = self.jobs_done.get(pod.job or "")
            if pod.key is not None and seen is not None:
                done[pod.key] = max(done.get(pod.key, 0.0), seen)
        return [t.end - done[t.map_index] for t in self.stages() if t.end is not None and t.map_index in done]


# ---------------------------------------------------------------- pods, from a watch
@dataclass
class PodRecord:
    uid: str
    name: str
    key: int | None = None  # the stage's map index, from the container's termination message
    index: int | None = None
    exit_ns: int | None = None  # the container's own clock just before it exited
    finished_at: float | None = None  # containerStatuses[].state.terminated.finishedAt (seconds)
    exit_code: int | None = None
    job: str | None = None  # the owning Job's name (the pod's job-name label)


class PodRecorder:
    """Every pod of a namespace, from a list-then-watch started before the DAG run (pods deleted
    by a TTL or a retry are still counted: the watch saw them), and the moment each Job of the
    namespace was first seen finished, from a second watch. Use as a context manager."""

    def __init__(self, api: Any, namespace: str) -> None:
        self.api, self.namespace = api, namespace
        self.pods: dict[str, PodRecord] = {}
        self.jobs_done: dict[str, float] = {}
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(kind,), name=f"{kind}-{namespace}", daemon=True)
            for kind in ("pods", "jobs")
        ]
        self._ready = {"pods": threading.Event(), "jobs": threading.Event()}
        self._responses: dict[str, Any] = {}
        self.error: BaseException | None = None

    def __enter__(self) -> PodRecorder:
        for thread in self._threads:
            thread.start()
        for kind, ready in self._ready.items():
            if not ready.wait(60):
                raise RuntimeError(f"the {kind} watch of {self.namespace} did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for response in list(self._responses.values()):
            with contextlib.suppress(Exception):
                response.shutdown() if hasattr(response, "shutdown") else response.close()
        for thread in self._threads:
            thread.join(5)

    def records(self) -> list[PodRecord]:
        return list(self.pods.values())

    def _run(self, kind: str) -> None:
        """List, then one long watch (no periodic re-watch: the benchmark's own requests stay
        out of the API server's counters while it measures); ``__exit__`` closes it."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        lister = (
            client.CoreV1Api(self.api).list_namespaced_pod
            if kind == "pods"
            else client.BatchV1Api(self.api).list_namespaced_job
        )
        record = self._record if kind == "pods" else self._record_job
        version = ""
        while not self._stop.is_set():
            try:
                if not version:
                    listed = lister(self.namespace)
                    for item in listed.items:
                        record(self.api.sanitize_for_serialization(item))
                    version = listed.metadata.resource_version
                    self._ready[kind].set()
                response = lister(
                    self.namespace,
                    watch=True,
                    resource_version=version,
                    timeout_seconds=3600,
                    allow_watch_bookmarks=True,
                    _preload_content=False,
                )
                self._responses[kind] = response
                followed = self._follow(response, record)
                version = "" if followed is None else followed or version
            except ApiException as err:
                if err.status != 410:
                    self.error = err
                    time.sleep(1)
                version = ""  # expired: list again (a record is only ever updated)
            except Exception as err:  # closed by __exit__, or dropped: watch again from where it was
                if not self._stop.is_set():
                    self.error = err
                    time.sleep(0.5)

    def _follow(self, response: Any, record: Callable[[Mapping[str, Any]], None]) -> str | None:
        """Events of one watch into ``record``; the last resourceVersion, None on 410 Gone."""
        version, buffer = "", b""
        for chunk in response.stream(65536, decode_content=True):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    if obj.get("code") == 410:
                        return None
                    continue
                version = obj.get("metadata", {}).get("resourceVersion", version)
                if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                    record(obj)
        return version

    def _record_job(self, job: Mapping[str, Any]) -> None:
        name = job.get("metadata", {}).get("name", "")
        conditions = (job.get("status") or {}).get("conditions") or []
        if name not in self.jobs_done and any(
            c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conditions
        ):
            self.jobs_done[name] = time.time()

    def _record(self, pod: Mapping[str, Any]) -> None:
        meta = pod.get("metadata", {})
        record = self.pods.setdefault(meta["uid"], PodRecord(uid=meta["uid"], name=meta.get("name", "")))
        labels = meta.get("labels") or {}
        record.job = labels.get("batch.kubernetes.io/job-name") or labels.get("job-name") or record.job
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (status.get("state") or {}).get("terminated")
            if not terminated:
                continue
            record.exit_code = terminated.get("exitCode")
            if terminated.get("finishedAt"):
                record.finished_at = epoch(terminated["finishedAt"].replace("Z", "+00:00"))
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                message = json.loads(terminated.get("message") or "")
                record.exit_ns = int(message["exit_ns"])
                record.index = int(message["index"])
                record.key = int(message["key"])


# ---------------------------------------------------------------- the API server's /metrics
def scrape(api: Any) -> str:
    response = api.call_api(
        "/metrics", "GET", auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True
    )
    return str(response.data.decode())


_SAMPLE = re.compile(r"^(\w+)\{([^}]*)\} (\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def samples(text: str, metric: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        if not line.startswith(metric + "{"):
            continue
        match = _SAMPLE.match(line)
        if match and match.group(1) == metric:
            out.append((dict(_LABEL.findall(match.group(2))), float(match.group(3))))
    return out


# what Jobs waiting cost: Job, pod and ledger (ConfigMap) reads and writes, events
RESOURCES = frozenset({"jobs", "pods", "configmaps", "events"})


def requests_by_verb(text: str, resources: frozenset[str] = RESOURCES) -> dict[str, float]:
    """``apiserver_request_total`` summed by verb over ``resources`` (every code, every scope)."""
    counts: dict[str, float] = {}
    for labels, value in samples(text, "apiserver_request_total"):
        if labels.get("resource") in resources:
            counts[labels["verb"]] = counts.get(labels["verb"], 0.0) + value
    return counts


def open_watches(text: str, resources: frozenset[str] = RESOURCES) -> float:
    """The ``apiserver_longrunning_requests`` gauge of WATCH over ``resources``."""
    return sum(
        value
        for labels, value in samples(text, "apiserver_longrunning_requests")
        if labels.get("verb") == "WATCH" and labels.get("resource") in resources
    )


def delta(after: Mapping[str, float], before: Mapping[str, float]) -> dict[str, float]:
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in sorted(set(after) | set(before))}


# ---------------------------------------------------------------- processes
def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its descendants, MiB."""
    total = 0
    for proc in tree(pid):
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total / 2**20


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """CPU seconds (user + system) of a process; with ``children`` also of its live descendants
    and of those it reaped."""
    total = 0.0
    for proc in tree(pid) if children else tree(pid)[:1]:
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            total += t.user + t.system + (t.children_user + t.children_system if children else 0.0)
    return total


# ---------------------------------------------------------------- the test ground
@dataclass
class Ground:
    """The cluster client, the deployment (for runs under the scheduler and the triggerer) and
    the ``dags test`` environment (home + env), any of them optional."""

    api: Any
    deployment: Any = None
    dags_test_home: Path | None = None
    dags_test_env: dict[str, str] | None = None
    cluster_env: dict[str, str] = field(default_factory=dict)  # KUBECONFIG, the connection
    scratch: Path = field(default_factory=lambda: world_readable_dir())
    unpaused: set[str] = field(default_factory=set)

    # ------------------------------------------------------------ namespaces
    def namespace(self, operator: str) -> str:
        from kubernetes import client

        name = f"bench-{operator[:3]}-{secrets.token_hex(3)}"
        core = client.CoreV1Api(self.api)
        core.create_namespace({"metadata": {"name": name}})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the controller-manager makes the default account
            with contextlib.suppress(Exception):
                core.read_namespaced_service_account("default", name)
                return name
            time.sleep(0.3)
        raise RuntimeError(f"no default service account in {name}")

    def drop(self, namespace: str) -> None:
        from kubernetes import client

        with contextlib.suppress(Exception):
            client.CoreV1Api(self.api).delete_namespace(namespace)

    # ------------------------------------------------------------ under the deployment
    def trigger(self, operator: str, conf: Mapping[str, Any]) -> str:
        dag_id = DAG_IDS[operator]
        deployment = self.deployment
        if dag_id not in self.unpaused:
            deployment.wait_dag(dag_id, timeout=180)
            deployment.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
            self.unpaused.add(dag_id)
        run_id = f"bench__{secrets.token_hex(5)}"
        deployment.api(
            "POST",
            f"/api/v2/dags/{dag_id}/dagRuns",
            {"dag_run_id": run_id, "logical_date": None, "conf": conf},
        )
        return run_id

    def deployed_run(self, operator: str, run_id: str) -> tuple[str, Any, Any] | None:
        rows = self.deployment.query(
            "select state, start_date, end_date from dag_run where dag_id=%s and run_id=%s",
            DAG_IDS[operator],
            run_id,
        )
        return (rows[0][0], rows[0][1], rows[0][2]) if rows else None

    def deployed_tasks(self, operator: str, run_id: str, *, state: str | None = None) -> list[TaskRow]:
        sql = (
            "select task_id, map_index, state, try_number, start_date, end_date from task_instance "
            "where dag_id=%s and run_id=%s"
        )
        params: list[Any] = [DAG_IDS[operator], run_id]
        if state is not None:
            sql += " and state=%s"
            params.append(state)
        return [_task_row(r) for r in self.deployment.query(sql, *params)]

    def wait_deployed(self, operator: str, run_id: str, *, timeout: float) -> RunResult:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.deployment.assert_running()
            found = self.deployed_run(operator, run_id)
            if found and found[0] in ("success", "failed"):
                tasks = self.deployed_tasks(operator, run_id)
                return RunResult(operator, run_id, found[0], epoch(found[1]), epoch(found[2]), tasks)
            time.sleep(0.5)
        raise TimeoutError(
            f"{DAG_IDS[operator]} {run_id} did not finish in {timeout:.0f}s\n"
            f"{self.deployment.report(DAG_IDS[operator])[-6000:]}"
        )

    def failure(self, run: RunResult, lines: int = 12) -> str:
        """The tails of a failed run's task logs, for the error that reports it."""
        logs = self.deployment.task_logs(DAG_IDS[run.operator], run.run_id)
        tails = [
            "\n".join([part.splitlines()[0], *part.splitlines()[1:][-lines:]])
            for part in logs.split("\n=== ")
            if part.strip()
        ]
        return "\n".join(tails)[-8000:]

    def lost_to_pod_discovery(self, run: RunResult) -> bool:
        """Whether an official run failed because a try's pod discovery found no pod
        (:data:`OFFICIAL_POD_DISCOVERY`); such a run is measured again, and counted."""
        if run.operator != "official" or run.state == "success":
            return False
        return OFFICIAL_POD_DISCOVERY in self.deployment.task_logs(DAG_IDS[run.operator], run.run_id)

    def measured(self, once: Callable[[], dict[str, Any] | None], what: str) -> dict[str, Any]:
        """The figures of ``once()``'s first run that was not lost to the official pod discovery
        (``once`` returns None for such a run), with ``lost_runs``: how many were, at most
        :data:`LOST_RUNS`."""
        for lost in range(LOST_RUNS + 1):
            found = once()
            if found is not None:
                return {**found, "lost_runs": lost}
        raise RuntimeError(f"{what}: {LOST_RUNS + 1} runs lost to the official operator's pod discovery")

    def run_deployed(self, operator: str, conf: Mapping[str, Any], *, timeout: float = 1800) -> RunResult:
        """Trigger a run, record its namespace's pods, wait for it to end."""
        with PodRecorder(self.api, str(conf["namespace"])) as pods:
            run_id = self.trigger(operator, conf)
            result = self.wait_deployed(operator, run_id, timeout=timeout)
            time.sleep(1)  # the watch's last events
        result.pods, result.jobs_done = pods.records(), dict(pods.jobs_done)
        return result

    # ------------------------------------------------------------ airflow dags test
    def run_dags_test(self, operator: str, conf: Mapping[str, Any], *, timeout: float = 900) -> RunResult:
        """``airflow dags test`` (the trigger runs in line), its run read back from SQLite."""
        if self.dags_test_home is None or self.dags_test_env is None:
            raise RuntimeError("no dags test home")
        dag_id = DAG_IDS[operator]
        # a logical date of its own: runs never share one
        date = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(
            seconds=secrets.randbelow(10**8)
        )
        airflow = str(Path(sys.executable).parent / "airflow")
        with PodRecorder(self.api, str(conf["namespace"])) as pods:
            proc = subprocess.run(
                [airflow, "dags", "test", dag_id, date.isoformat(), "-c", json.dumps(dict(conf))],
                env=self.dags_test_env,
                cwd=self.dags_test_home,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            time.sleep(1)
        if proc.returncode != 0:
            raise RuntimeError(
                f"dags test {dag_id} exited {proc.returncode}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
            )
        with contextlib.closing(sqlite3.connect(self.dags_test_home / "airflow.db")) as db:
            run = db.execute(
                "select run_id, state, start_date, end_date from dag_run where dag_id=? order by id desc limit 1",
                (dag_id,),
            ).fetchone()
            rows = db.execute(
                "select task_id, map_index, state, try_number, start_date, end_date from task_instance "
                "where dag_id=? and run_id=?",
                (dag_id, run[0]),
            ).fetchall()
        end = run[3] or max(r[5] for r in rows if r[5])
        result = RunResult(operator, run[0], run[1], epoch(run[2]), epoch(end), [_task_row(r) for r in rows])
        result.pods, result.jobs_done = pods.records(), dict(pods.jobs_done)
        return result


def _task_row(row: Sequence[Any]) -> TaskRow:
    return TaskRow(
        task_id=row[0],
        map_index=int(row[1]),
        state=row[2],
        try_number=int(row[3] or 0),
        start=epoch(row[4]) if row[4] else None,
        end=epoch(row[5]) if row[5] else None,
    )


def world_readable_dir() -> Path:
    """A scratch directory the containers (run as the pod's user on the process node) can read."""
    path = Path(tempfile.mkdtemp(prefix="kbatch-bench-"))
    path.chmod(0o755)
    atexit.register(shutil.rmtree, path, True)  # release files and markers: gone with the process
    return path


# ---------------------------------------------------------------- standing it up
def link_bench_dags(dags_folder: Path) -> None:
    """Put ``benchmarks/dags`` into a DAG folder (a symlink ``bench``), once."""
    link = Path(dags_folder) / "bench"
    if not link.exists():
        with contextlib.suppress(FileExistsError):
            link.symlink_to(BENCH_DAGS)


# importing the official operator's module is slow on a loaded 2-core machine: Airflow's 30 s
# DAG import timeout was hit at a load average of 20
SLOW_MACHINE = {"AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "180"}


def dags_test_env(home: Path, cluster_env: Mapping[str, str]) -> dict[str, str]:
    """The environment of a SQLite ``AIRFLOW_HOME`` whose DAG folder is ``benchmarks/dags``
    (the same settings as the e2e tests' ``airflow_env``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.update(cluster_env)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONPATH": str(REPO),
            "AIRFLOW__KBATCH__TRIGGER_EVENT_HOLD_SECONDS": "0",
            **SLOW_MACHINE,
        }
    )
    return env


def _dags_test_home(root: Path, cluster_env: Mapping[str, str]) -> tuple[Path, dict[str, str]]:
    home = root / "dagstest"
    (home / "dags").mkdir(parents=True)
    link_bench_dags(home / "dags")
    env = dags_test_env(home, cluster_env)
    subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        env=env,
        cwd=home,
        check=True,
        capture_output=True,
        timeout=600,
    )
    return home, env


@contextlib.contextmanager
def standalone(
    *,
    nodes: int = 2,
    deployment: bool = True,
    dags_test: bool = True,
    parallelism: int = 4,
    cluster_dir: Path | None = None,
    airflow_dir: Path | None = None,
    simulated_nodes: int = 0,
    client_qps: int | None = None,
) -> Iterator[Ground]:
    """A fresh development cluster, Airflow deployment and ``dags test`` home for ``make bench``;
    everything it started is stopped afterwards. ``cluster_dir`` / ``airflow_dir`` attach to a
    running cluster / deployment instead (``make airflow-up``; the benchmark DAGs are linked
    into its DAG folder) and leave them running."""
    from kubernetes import config

    from airflow_provider_kbatch.devcluster.airflowdeploy import AirflowDeployment
    from airflow_provider_kbatch.devcluster.build import ensure_binaries
    from airflow_provider_kbatch.devcluster.cluster import DevCluster

    ensure_binaries()
    with tempfile.TemporaryDirectory(prefix="kbatch-bench-") as tmp:
        root = Path(tmp)
        cluster = DevCluster(
            Path(cluster_dir) if cluster_dir else root / "cluster",
            nodes=nodes,
            simulated_nodes=simulated_nodes,
            client_qps=client_qps,
        )
        started: Any = None
        try:
            if cluster_dir is None:
                print(f"starting a development cluster ({nodes} process nodes) ...", flush=True)
                cluster.up(wait_seconds=300)
            elif not cluster.status()["ready"]:
                raise RuntimeError(f"no ready cluster in {cluster_dir}")
            api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
            ground = Ground(api=api, cluster_env=cluster.env())
            if dags_test:
                ground.dags_test_home, ground.dags_test_env = _dags_test_home(root, cluster.env())
            if deployment and airflow_dir is not None:
                attached = AirflowDeployment.attach(Path(airflow_dir))
                if attached is None:
                    raise RuntimeError(f"no Airflow deployment in {airflow_dir}")
                link_bench_dags(attached.cfg.dags_folder)
                ground.deployment = attached
            elif deployment:
                print(
                    "starting an Airflow deployment (PostgreSQL, scheduler, triggerer, ...) ...", flush=True
                )
                folder = root / "dags"
                folder.mkdir()
                link_bench_dags(folder)
                started = AirflowDeployment(
                    home=root / "airflow",
                    dags_folder=folder,
                    extra_env=cluster.env(),
                    parallelism=parallelism,
                )
                started.start(timeout=600)
                ground.deployment = started
            yield ground
        finally:
            if started is not None:
                with contextlib.suppress(Exception):
                    started.stop()
            if cluster_dir is None:
                cluster.down()


# ---------------------------------------------------------------- printing
Row = tuple[str, float | None, float | None]


def ratio(kbatch: float | None, official: float | None) -> str:
    if kbatch is None or official is None or official != official or kbatch != kbatch:
        return "-"
    if official == 0:
        return "-" if kbatch == 0 else "inf"
    return f"{kbatch / official:.3g}x"


def fmt(value: float | None) -> str:
    if value is None or value != value:
        return "-"
    if abs(value) >= 100 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:.3g}"


def table(title: str, rows: Sequence[Row], *, out: Callable[[str], None] = print) -> str:
    """A table of figures with the kbatch / official ratio (below 1: kbatch needs less)."""
    head = ("figure", "kbatch", "official", "kbatch/official")
    body = [(name, fmt(k), fmt(o), ratio(k, o)) for name, k, o in rows]
    widths = [max(len(r[i]) for r in (head, *body)) for i in range(4)]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [f"== {title}  [load average {load} on {os.cpu_count()} cores]"]
    lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in body]
    text = "\n".join(lines)
    out(text + "\n")
    return text
