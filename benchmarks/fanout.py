"""Item 4: fan-out under the deployment: one kbatch stage of N indexes (one task instance, one
Indexed Job) versus N mapped official task instances (N Jobs of one pod), the same N
containers that exit at once.

Figures: the DAG run's wall time, the stage's task instances, the CPU seconds of the scheduler
process itself ("scheduler time") and of every Airflow process of the deployment (scheduler
with its LocalExecutor workers and task processes, triggerer, api-server, dag-processor), and
the pods the run made. ``--kbatch-only-indexes 10000`` adds a kbatch-only run at that size.

    python benchmarks/run.py --only fanout --indexes 1000 --parallelism 50
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.harness import OPERATORS, Ground, RunResult, cpu_seconds, table

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


def _airflow_cpu(ground: Ground) -> tuple[float, float]:
    pids = ground.deployment.pids
    scheduler = cpu_seconds(pids["scheduler"], children=False)
    return scheduler, sum(cpu_seconds(pids[c]) for c in COMPONENTS if c in pids)


def measure(ground: Ground, operator: str, *, indexes: int, parallelism: int) -> dict[str, Any]:
    """The figures of one successful run (an official run lost to its pod discovery is run
    again: :meth:`Ground.measured`)."""
    return ground.measured(
        lambda: _measure(ground, operator, indexes=indexes, parallelism=parallelism), f"{operator} fan-out"
    )


def _measure(ground: Ground, operator: str, *, indexes: int, parallelism: int) -> dict[str, Any] | None:
    namespace = ground.namespace(operator)
    if operator == "kbatch":
        conf = {"namespace": namespace, "width": 1, "completions": indexes, "parallelism": parallelism}
    else:
        conf = {"namespace": namespace, "width": indexes, "completions": 1}
    scheduler0, airflow0 = _airflow_cpu(ground)
    started = time.monotonic()
    run: RunResult = ground.run_deployed(operator, {**conf, "sleep": 0}, timeout=600 + 10 * indexes)
    seconds = time.monotonic() - started
    scheduler1, airflow1 = _airflow_cpu(ground)
    ground.drop(namespace)
    if ground.lost_to_pod_discovery(run):
        return None
    if run.state != "success":
        raise RuntimeError(f"{operator} fan-out run {run.run_id} ended {run.state}:\n{ground.failure(run)}")
    exits = [p.exit_ns / 1e9 for p in run.pods if p.exit_ns is not None]
    return {
        "wall": run.wall,
        "trigger_to_end": seconds,
        "task_instances": len(run.stages()),
        "tries": sum(t.try_number for t in run.stages()),
        "scheduler_cpu": scheduler1 - scheduler0,
        "airflow_cpu": airflow1 - airflow0,
        "pods": len(run.pods),
        "containers_done": len(exits),
        "tail": run.end - max(exits) if exits else float("nan"),
    }


def rows(k: dict[str, Any], o: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    return [
        ("DAG run wall time, s", k["wall"], o["wall"]),
        ("stage task instances", k["task_instances"], o["task_instances"]),
        ("their tries (Airflow retries included)", k["tries"], o["tries"]),
        ("scheduler CPU, s", k["scheduler_cpu"], o["scheduler_cpu"]),
        ("all Airflow processes CPU, s", k["airflow_cpu"], o["airflow_cpu"]),
        ("pods", k["pods"], o["pods"]),
        ("last container exit -> run end, s", k["tail"], o["tail"]),
        ("runs lost to the official pod discovery, measured again", k["lost_runs"], o["lost_runs"]),
    ]


def main(ground: Ground, *, indexes: int, parallelism: int, kbatch_only: int = 0) -> dict[str, Any]:
    found = {op: measure(ground, op, indexes=indexes, parallelism=parallelism) for op in OPERATORS}
    table(
        f"fan-out of {indexes}: one kbatch stage of {indexes} indexes (parallelism {parallelism}) "
        f"vs {indexes} mapped official tasks",
        rows(found["kbatch"], found["official"]),
    )
    if kbatch_only:
        alone = measure(ground, "kbatch", indexes=kbatch_only, parallelism=parallelism)
        found["kbatch_only"] = alone
        table(
            f"fan-out of {kbatch_only}, kbatch alone (parallelism {parallelism})",
            [(name, value, None) for name, value, _ in rows(alone, alone)],
        )
    return found
