"""The session's ``airflow`` commands are forked from a warmed Airflow (tests/e2e/forkserver.py):
they give what a plain process gives, and a failing command fails the same way."""

from __future__ import annotations

import subprocess
from typing import Any


def test_commands_are_forked_and_end_like_a_plain_process(airflow_env: Any) -> None:
    server = airflow_env.forkserver
    assert server is not None and server.serves(airflow_env.env)
    before = server.spawned
    forked = airflow_env.run("version")
    plain = subprocess.run(
        airflow_env.command("version"),
        env=airflow_env.env,
        cwd=airflow_env.home,
        capture_output=True,
        text=True,
    )
    assert server.spawned == before + 1
    assert (
        (forked.returncode, forked.stdout.strip())
        == (plain.returncode, plain.stdout.strip())
        == (
            0,
            plain.stdout.strip(),
        )
    )
    assert plain.stdout.strip().startswith("3.")
    missing = airflow_env.run("dags", "test", "kbatch_no_such_dag", check=False)
    assert server.spawned == before + 2
    assert missing.returncode != 0
    assert "kbatch_no_such_dag" in missing.stdout + missing.stderr
    # another environment is not forked: Airflow read the server's configuration at import
    assert not server.serves({**airflow_env.env, "AIRFLOW__CORE__PARALLELISM": "3"})
