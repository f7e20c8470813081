"""Item 5: retry after k of N indexes failed, under the deployment.

One stage of N indexes (``parallelism`` at a time) whose indexes ``0..k-1`` exit 3 the first
time they run (a marker file remembers it: the spec is the same on both tries); neither Job retries pods, so the try fails and Airflow retries the task once.
kbatch resumes only the failed indexes (its ledger knows the others completed); the official
operator creates a new Job and runs all N again. Figures: index runs (pods whose container
ran to an exit, both tries), wall time from the DAG run's start to success, tries.

    python benchmarks/run.py --only retry --indexes 100 --failed 10 --parallelism 20
"""

from __future__ import annotations

from typing import Any

from benchmarks.harness import OPERATORS, Ground, table


def measure(ground: Ground, operator: str, *, indexes: int, failed: int, parallelism: int) -> dict[str, Any]:
    """The figures of one successful run (an official run lost to its pod discovery is run
    again: :meth:`Ground.measured`)."""
    return ground.measured(
        lambda: _measure(ground, operator, indexes=indexes, failed=failed, parallelism=parallelism),
        f"{operator} retry",
    )


def _measure(
    ground: Ground, operator: str, *, indexes: int, failed: int, parallelism: int
) -> dict[str, Any] | None:
    namespace = ground.namespace(operator)
    marks = ground.scratch / f"{namespace}.marks"
    marks.mkdir()
    marks.chmod(0o777)  # the containers run as the pod's user
    conf = {
        "marks": str(marks),
        "namespace": namespace,
        "completions": indexes,
        "parallelism": parallelism,
        "sleep": 0,
        "fail": ",".join(str(i) for i in range(failed)),
    }
    run = ground.run_deployed(operator, conf, timeout=600 + 10 * indexes)
    ground.drop(namespace)
    if ground.lost_to_pod_discovery(run):
        return None
    if run.state != "success":
        raise RuntimeError(f"{operator} retry run {run.run_id} ended {run.state}:\n{ground.failure(run)}")
    stage = run.stages()
    ran = [p for p in run.pods if p.exit_code is not None]
    return {
        "index_runs": len(ran),
        "failed_runs": sum(1 for p in ran if p.exit_code != 0),
        "pods": len(run.pods),
        "wall": run.wall,
        "tries": max((t.try_number for t in stage), default=0),
    }


def rows(k: dict[str, Any], o: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    return [
        ("index runs (containers that exited), both tries", k["index_runs"], o["index_runs"]),
        ("  of which failed", k["failed_runs"], o["failed_runs"]),
        ("pods created", k["pods"], o["pods"]),
        ("DAG run start -> success, s", k["wall"], o["wall"]),
        ("tries of the stage", k["tries"], o["tries"]),
        ("runs lost to the official pod discovery, measured again", k["lost_runs"], o["lost_runs"]),
    ]


def main(ground: Ground, *, indexes: int, failed: int, parallelism: int) -> dict[str, Any]:
    found = {
        op: measure(ground, op, indexes=indexes, failed=failed, parallelism=parallelism) for op in OPERATORS
    }
    table(
        f"retry after {failed} of {indexes} indexes failed (parallelism {parallelism})",
        rows(found["kbatch"], found["official"]),
    )
    return found
