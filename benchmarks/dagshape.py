"""The shape of the benchmark DAGs of ``benchmarks/dags``: one stage, run by kbatch and by the
official ``KubernetesJobOperator``.

``kbatch_bench_kbatch`` and ``kbatch_bench_official`` have one shape, chosen by the run's conf:
``width`` mapped copies of a stage of ``completions`` indexes (``parallelism`` at a time), so
one DAG serves every item of ``benchmarks/run.py``:

* latency: width 1, completions 1, each container sleeps ``sleep`` seconds;
* waiting Jobs (API requests, triggerer memory, event latency): width N, each container waits
  until the file ``release`` exists (the benchmark creates it after its measuring window);
* fan-out: kbatch width 1 x completions N, official width N x completions 1;
* retry: width 1 x completions N, the indexes in ``fail`` exit 3 the first time they run (a
  marker file in ``marks`` remembers it, so both tries run the same spec: a spec rendered
  from ``ti.try_number`` would differ between tries, and kbatch rightly resumes only a Job of
  the same spec).

Every container writes ``{"key": map index, "index": i, "exit_ns": time.time_ns()}`` to its
termination message just before it exits: the benchmark's zero for "container exit -> task end".
Both operators defer (the official one polls every ``job_poll_interval``, 10 s by default, left
as is); both retry once after a second; kbatch's indexes get no pod retries
(``backoff_limit_per_index=0``) and the official Job none either (``backoff_limit=0``), so a
failed index fails the try and Airflow's retry decides what runs again.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, Param

IMAGE = "ghcr.io/example/kbatch-worker:0.1.0"  # ignored by the process node
CONTAINER = """
import json, os, sys, time
e = os.environ
i = int(e.get("KBATCH_INDEX") or e.get("JOB_COMPLETION_INDEX") or 0)
release = e.get("RELEASE")
if release:
    while not os.path.exists(release):
        time.sleep(0.2)
else:
    time.sleep(float(e.get("SLEEP") or 0))
fail = False
if str(i) in e.get("FAIL", "").split(","):  # once per index: a marker says it failed before
    marker = os.path.join(e.get("MARKS") or "/nonexistent", f"{e.get('KEY')}-{i}")
    fail = not os.path.exists(marker)
    if fail:
        open(marker, "w").close()
with open(e.get("KBATCH_TERMINATION_MESSAGE_PATH") or "/dev/termination-log", "w") as out:
    json.dump({"key": e.get("KEY"), "index": i, "exit_ns": time.time_ns()}, out)
sys.exit(3 if fail else 0)
"""
PARAMS = {
    "namespace": Param("default", type="string"),
    "width": Param(1, type="integer", minimum=1),
    "completions": Param(1, type="integer", minimum=1),
    "parallelism": Param(1, type="integer", minimum=1),
    "sleep": Param(2.0, type="number"),
    "release": Param("", type="string"),
    "fail": Param("", type="string", description="indexes that exit 3 on their first run: 0,3,7"),
    "marks": Param(
        "", type="string", description="a directory the containers can write: one marker per failed index"
    ),
}
ARGS: dict[str, Any] = {"retries": 1, "retry_delay": timedelta(seconds=1)}


def plan(params: dict[str, Any], env_key: str) -> list[dict[str, Any]]:
    # the same env on every try: a retry runs the same spec (kbatch resumes only an unchanged one)
    env = {
        "SLEEP": str(params["sleep"]),
        "RELEASE": params["release"],
        "FAIL": params["fail"],
        "MARKS": params["marks"],
    }
    return [
        {
            env_key: {**env, "KEY": str(i)},
            "completions": int(params["completions"]),
            "parallelism": min(int(params["parallelism"]), int(params["completions"])),
        }
        for i in range(int(params["width"]))
    ]


def dag(dag_id: str) -> DAG:
    return DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        params=PARAMS,
        max_active_tasks=10_000,
        max_active_runs=16,
        tags=["kbatch", "benchmark"],
    )
