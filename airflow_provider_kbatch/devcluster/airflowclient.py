"""Reading and driving a running Airflow deployment (of
:mod:`airflow_provider_kbatch.devcluster.airflowdeploy`): :class:`DeploymentClient`, the methods
:class:`~airflow_provider_kbatch.devcluster.airflowdeploy.AirflowDeployment` inherits for the
``airflow`` CLI (``run``, ``trigger``, ``backfill``, ``pause``), the REST API (``api``,
``health``), the metadata database (``query``, ``runs``, ``task_instances``, ``xcom``,
``wait_dag``, ``wait_runs``) and the logs (``task_logs``, ``log_tails``, ``report``); and
:class:`Run`, one DAG run as the database records it.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_provider_kbatch.devcluster.airflowconfig import (
    COMPONENTS,
    TERMINAL_RUN_STATES,
    DeploymentConfig,
    healthy,
)
from airflow_provider_kbatch.devcluster.postgres import DATABASE, USER, PostgresServer


# ---------------------------------------------------------------- what the database says
@dataclass(frozen=True)
class Run:
    """One DAG run as recorded in the metadata database."""

    dag_id: str
    run_id: str
    state: str
    run_type: str
    logical_date: datetime.datetime | None
    start_date: datetime.datetime | None
    end_date: datetime.datetime | None
    backfill_id: int | None
    conf: Any

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_RUN_STATES


def overlapping(runs: Sequence[Run]) -> list[tuple[str, str]]:
    """Pairs of runs whose [start, end] intervals intersect."""
    pairs = []
    for i, a in enumerate(runs):
        for b in runs[i + 1 :]:
            known = a.start_date and a.end_date and b.start_date and b.end_date
            if known and a.start_date < b.end_date and b.start_date < a.end_date:  # type: ignore[operator]
                pairs.append((a.run_id, b.run_id))
    return pairs


# ---------------------------------------------------------------- the running deployment
class DeploymentClient:
    """The calls on a running deployment; :class:`AirflowDeployment` provides the attributes
    (its home, configuration, environment, PostgreSQL server and component processes)."""

    home: Path
    cfg: DeploymentConfig
    env: dict[str, str]
    postgres: PostgresServer
    procs: dict[str, subprocess.Popen[bytes]]

    @property
    def url(self) -> str:
        return self.cfg.url

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    def component_log(self, component: str) -> Path:
        return self.home / f"{component}.out"

    # ---------------------------------------------------------------- CLI
    def run(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``airflow <args>`` against this deployment's home and database."""
        proc = subprocess.run(
            [self.cfg.airflow, *args],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"airflow {' '.join(args)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n"
                f"--- stderr\n{proc.stderr[-4000:]}"
            )
        return proc

    def unpause(self, dag_id: str) -> None:
        self.run("dags", "unpause", dag_id)

    def pause(self, dag_id: str) -> None:
        self.run("dags", "pause", dag_id)

    def trigger(self, dag_id: str, run_id: str, *, conf: Mapping[str, Any] | None = None) -> None:
        """``airflow dags trigger`` with a run id of the caller's (unique per test, please)."""
        args = ["dags", "trigger", dag_id, "--run-id", run_id]
        if conf is not None:
            args += ["-c", json.dumps(conf)]
        self.run(*args)

    def backfill(
        self,
        dag_id: str,
        from_date: str,
        to_date: str,
        *,
        conf: dict[str, Any] | None = None,
        max_active_runs: int | None = None,
        reprocess_behavior: str | None = None,
        run_backwards: bool = False,
    ) -> int:
        """``airflow backfill create``; returns the id of the backfill it created."""
        before = self._last_backfill_id(dag_id)
        args = ["backfill", "create", "--dag-id", dag_id, "--from-date", from_date, "--to-date", to_date]
        if conf is not None:
            args += ["--dag-run-conf", json.dumps(conf)]
        if max_active_runs is not None:
            args += ["--max-active-runs", str(max_active_runs)]
        if reprocess_behavior is not None:
            args += ["--reprocess-behavior", reprocess_behavior]
        if run_backwards:
            args.append("--run-backwards")
        proc = self.run(*args)
        after = self._last_backfill_id(dag_id)
        if after is None or after == before:
            raise AssertionError(
                f"airflow backfill create made no backfill:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
            )
        return after

    # ---------------------------------------------------------------- REST API
    def api(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """A call of the REST API (``/api/v2/...``) with a token of the (all-admin) auth manager."""
        with urllib.request.urlopen(f"{self.url}/auth/token", timeout=30) as response:
            token = json.loads(response.read())["access_token"]
        request = urllib.request.Request(
            f"{self.url}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"null")

    def health(self) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=5) as resp:
                return dict(json.load(resp))
        except (urllib.error.URLError, OSError, ValueError):
            return {}

    # ---------------------------------------------------------------- metadata database
    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows of one read-only statement (``%s`` placeholders), timestamps in UTC."""
        import psycopg2  # the postgres extra of apache-airflow brings it

        conn = psycopg2.connect(
            host="127.0.0.1",
            port=self.postgres.port,
            user=USER,
            dbname=DATABASE,
            connect_timeout=10,
            options="-c timezone=UTC -c default_transaction_read_only=on",
        )
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(sql, params)
                return list(cursor.fetchall())
        finally:
            conn.close()

    def _last_backfill_id(self, dag_id: str) -> int | None:
        rows = self.query("select max(id) from backfill where dag_id=%s", dag_id)
        return rows[0][0] if rows else None

    def backfill_completed(self, backfill_id: int) -> bool:
        """The scheduler marks a backfill completed once all its runs finished (a DAG allows one
        backfill at a time: create the next only after this)."""
        rows = self.query("select completed_at from backfill where id=%s", backfill_id)
        return bool(rows) and rows[0][0] is not None

    def dag_parsed(self, dag_id: str) -> bool:
        rows = self.query("select is_stale from dag where dag_id=%s and bundle_name is not null", dag_id)
        return bool(rows) and not rows[0][0]

    def import_errors(self) -> dict[str, str]:
        return {r[0]: r[1] for r in self.query("select filename, stacktrace from import_error")}

    def wait_dag(self, dag_id: str, *, timeout: float = 120) -> None:
        """Wait until the dag-processor has put ``dag_id`` in the database."""
        self._wait(lambda: self.dag_parsed(dag_id), timeout=timeout, what=f"DAG {dag_id} parsed")

    def runs(self, dag_id: str, *, run_type: str | None = None, backfill_id: int | None = None) -> list[Run]:
        sql = (
            "select dag_id, run_id, state, run_type, logical_date, start_date, end_date, backfill_id, conf "
            "from dag_run where dag_id=%s"
        )
        params: list[Any] = [dag_id]
        if run_type is not None:
            sql += " and run_type=%s"
            params.append(run_type)
        if backfill_id is not None:
            sql += " and backfill_id=%s"
            params.append(backfill_id)
        rows = self.query(sql + " order by logical_date, id", *params)
        return [
            Run(
                dag_id=r[0],
                run_id=r[1],
                state=r[2],
                run_type=r[3],
                logical_date=_utc(r[4]),
                start_date=_utc(r[5]),
                end_date=_utc(r[6]),
                backfill_id=r[7],
                conf=_json(r[8]),
            )
            for r in rows
        ]

    def task_instances(self, dag_id: str, run_id: str) -> dict[tuple[str, int], tuple[str | None, int]]:
        """(task_id, map_index) -> (state, try_number)."""
        rows = self.query(
            "select task_id, map_index, state, try_number from task_instance where dag_id=%s and run_id=%s",
            dag_id,
            run_id,
        )
        return {(r[0], r[1]): (r[2], r[3]) for r in rows}

    def xcom(
        self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1
    ) -> Any:
        rows = self.query(
            "select value from xcom where dag_id=%s and run_id=%s and task_id=%s and key=%s and map_index=%s",
            dag_id,
            run_id,
            task_id,
            key,
            map_index,
        )
        if not rows:
            return None
        value = _json(rows[0][0])
        return _json(value) if isinstance(value, str) else value

    def wait_runs(
        self,
        dag_id: str,
        count: int,
        *,
        timeout: float = 300,
        run_type: str | None = None,
        backfill_id: int | None = None,
    ) -> list[Run]:
        """Wait until ``count`` runs exist and all are finished (success or failed); return them.

        Fails early when a component died; on timeout the message holds every run's state, its task
        states and the tails of the component and task logs.
        """

        def check() -> list[Run] | None:
            self.assert_running()
            runs = self.runs(dag_id, run_type=run_type, backfill_id=backfill_id)
            if len(runs) >= count and all(r.finished for r in runs):
                return runs
            return None

        try:
            return list(
                self._wait(check, timeout=timeout, interval=1.0, what=f"{count} finished runs of {dag_id}")
            )
        except AssertionError as err:
            raise AssertionError(f"{err}\n{self.report(dag_id)}") from None

    # ---------------------------------------------------------------- logs and diagnostics
    def task_logs(self, dag_id: str, run_id: str | None = None, task_id: str | None = None) -> str:
        """The task log files of a DAG (optionally one run / one task), concatenated with headers."""
        base = self.log_dir / f"dag_id={dag_id}"
        pattern = f"run_id={run_id or '*'}/task_id={task_id or '*'}/**/*.log"
        parts = [
            f"=== {p.relative_to(self.log_dir)}\n{p.read_text(errors='replace')}"
            for p in sorted(base.glob(pattern))
        ]
        return "\n".join(parts)

    def log_tails(self, lines: int = 30) -> str:
        parts = [
            f"--- {c} ({self.component_log(c)})\n{_tail(self.component_log(c), lines)}" for c in COMPONENTS
        ]
        if self.postgres.root is not None:
            parts.append(f"--- postgres ({self.postgres.log_file})\n{self.postgres.log_tail(lines)}")
        return "\n".join(parts)

    def report(self, dag_id: str, lines: int = 30) -> str:
        out = [f"runs of {dag_id}:"]
        for run in self.runs(dag_id):
            out.append(f"  {run.run_id} {run.state} start={run.start_date} end={run.end_date}")
            for (task_id, map_index), (state, tries) in sorted(
                self.task_instances(dag_id, run.run_id).items()
            ):
                out.append(f"    {task_id}[{map_index}] {state} try={tries}")
            if not run.finished or run.state == "failed":
                for log_file in sorted(
                    (self.log_dir / f"dag_id={dag_id}" / f"run_id={run.run_id}").glob("**/*.log")
                ):
                    out.append(f"    --- {log_file.relative_to(self.log_dir)}\n{_tail(log_file, lines)}")
        errors = self.import_errors()
        if errors:
            out.append(f"import errors: {json.dumps(errors, indent=1)[:3000]}")
        out.append(self.log_tails(lines))
        return "\n".join(out)

    def _healthy(self) -> bool:
        self.assert_running()
        return healthy(self.health())

    def assert_running(self) -> None:
        dead = {c: p.returncode for c, p in self.procs.items() if p.poll() is not None}
        if dead:
            raise AssertionError(f"Airflow components exited: {dead}\n{self.log_tails(60)}")

    def _wait(self, check: Callable[[], Any], *, timeout: float, interval: float = 0.5, what: str) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = check()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def _utc(value: Any) -> datetime.datetime | None:
    if value is None:
        return None
    parsed = value if isinstance(value, datetime.datetime) else datetime.datetime.fromisoformat(str(value))
    return (
        parsed.astimezone(datetime.timezone.utc)
        if parsed.tzinfo
        else parsed.replace(tzinfo=datetime.timezone.utc)
    )


def _json(value: Any) -> Any:
    if isinstance(value, bytes | str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no file)"
    return "\n".join(text.splitlines()[-lines:])
