"""Item 1: last container exit -> task end, kbatch versus the official operator.

One stage of one index whose container sleeps ``--sleep`` seconds, writes its own clock
(``time.time_ns()``) to its termination message and exits; the figure is the task instance's
``end_date`` minus that timestamp. Both operators run alternately (kbatch, official, official,
kbatch, ...) in ``airflow dags test`` (the trigger runs in line) and under the deployment's
scheduler and triggerer. "Job seen finished -> task end" is the operator's own share: from
the moment a watch of the benchmark saw the Job's ``Complete`` condition (the Job controller's
latency is before that) to the task's end. The pod's ``finishedAt`` (whole seconds) is shown
for comparison. The container sleeps 10 s by default: longer than kbatch's
``[kbatch] trigger_event_hold_seconds`` (6 s after the deferral, set 0 in ``dags test``), which
would otherwise be measured instead of the wait.

    python benchmarks/run.py --only latency --runs 5 [--modes dags-test,deployed]

Rerun this after a change to how kbatch ends its task (e.g. in the triggerer) to see the new
figure beside the official one; nothing here depends on how the task ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from benchmarks.harness import OPERATORS, Ground, RunResult, median, table

MODES = ("dags-test", "deployed")


@dataclass
class LatencyResult:
    mode: str
    seconds: dict[str, list[float]] = field(default_factory=lambda: {o: [] for o in OPERATORS})
    finished_at: dict[str, list[float]] = field(default_factory=lambda: {o: [] for o in OPERATORS})
    beyond: dict[str, list[float]] = field(default_factory=lambda: {o: [] for o in OPERATORS})
    runs: list[RunResult] = field(default_factory=list)

    def rows(self) -> list[tuple[str, float | None, float | None]]:
        k, o = self.seconds["kbatch"], self.seconds["official"]
        fk, fo = self.finished_at["kbatch"], self.finished_at["official"]
        bk, bo = self.beyond["kbatch"], self.beyond["official"]
        return [
            ("container exit -> task end, median s", median(k), median(o)),
            ("container exit -> task end, max s", max(k, default=None), max(o, default=None)),
            ("Job seen finished -> task end, median s", median(bk), median(bo)),
            ("Job seen finished -> task end, max s", max(bk, default=None), max(bo, default=None)),
            ("finishedAt (whole s) -> task end, median s", median(fk), median(fo)),
            ("runs", len(k), len(o)),
        ]


def order(runs: int, operators: Sequence[str] = OPERATORS) -> list[str]:
    """Alternating, each operator first as often: kbatch official official kbatch ..."""
    out: list[str] = []
    for i in range(runs):
        out += list(operators) if i % 2 == 0 else list(reversed(operators))
    return out


def measure(
    ground: Ground,
    *,
    mode: str,
    runs: int = 3,
    sleep: float = 10.0,
    operators: Sequence[str] = OPERATORS,
) -> LatencyResult:
    result = LatencyResult(mode)
    for operator in order(runs, operators):
        namespace = ground.namespace(operator)
        conf = {"namespace": namespace, "sleep": sleep}
        if mode == "dags-test":
            run = ground.run_dags_test(operator, conf)
        else:
            run = ground.run_deployed(operator, conf, timeout=600)
        ground.drop(namespace)
        if run.state != "success":
            raise RuntimeError(f"{operator} latency run {run.run_id} ended {run.state}")
        result.runs.append(run)
        result.seconds[operator] += run.exit_to_end()
        result.beyond[operator] += run.job_done_to_end()
        ends = {t.map_index: t.end for t in run.stages() if t.end is not None}
        result.finished_at[operator] += [
            ends[p.key] - p.finished_at
            for p in run.pods
            if p.key in ends and p.finished_at is not None and p.exit_code == 0
        ]
    return result


def main(ground: Ground, *, runs: int, sleep: float, modes: Sequence[str]) -> list[LatencyResult]:
    results = []
    for mode in modes:
        found = measure(ground, mode=mode, runs=runs, sleep=sleep)
        table(f"last container exit -> task end ({mode}, {runs} runs each, alternating)", found.rows())
        results.append(found)
    return results
