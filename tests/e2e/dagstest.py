"""``airflow dags test`` in the background, for tests that act while a DAG run waits."""

from __future__ import annotations

import json
import os
import secrets
import signal
import sqlite3
import subprocess
from typing import Any

from tests.conftest import wait_until


class DagsTest:
    """``airflow dags test`` in the background; its output (unbuffered) in a file."""

    def __init__(self, airflow_env: Any, dag_id: str, conf: dict[str, Any]) -> None:
        self.airflow_env, self.dag_id = airflow_env, dag_id
        self.path = airflow_env.home / f"dags-test-{dag_id}-{secrets.token_hex(3)}.log"
        self.proc = airflow_env.spawn(
            "dags", "test", dag_id, "2026-01-01", "-c", json.dumps(conf), log=self.path
        )

    def output(self) -> str:
        return self.path.read_text(errors="replace")

    def wait_for(self, text: str, *, count: int = 1, timeout: float = 120) -> None:
        def seen() -> bool:
            if self.output().count(text) >= count:
                return True
            assert self.proc.poll() is None, f"dags test ended before {text!r}:\n{self.output()[-6000:]}"
            return False

        wait_until(
            seen, timeout=timeout, interval=0.3, what=f"{text!r} x{count} in the output of {self.dag_id}"
        )

    def wait_state(self, task_id: str, state: str, *, timeout: float = 120) -> None:
        def reached() -> bool:
            assert self.proc.poll() is None, (
                f"dags test ended before {task_id} was {state}:\n{self.output()[-6000:]}"
            )
            try:
                states = self.airflow_env.task_states(self.dag_id)
            except (sqlite3.OperationalError, TypeError):  # no run yet, or the database is busy
                return False
            return states.get((task_id, -1), (None,))[0] == state

        wait_until(reached, timeout=timeout, interval=0.3, what=f"{self.dag_id}.{task_id} {state}")

    def finish(self, timeout: float = 300) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"dags test {self.dag_id} did not end:\n{self.output()[-6000:]}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the session this test started
            self.proc.wait()
