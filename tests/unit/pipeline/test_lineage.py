"""The run's stage graph, timings and critical path (pure), built from real ledger records."""

from __future__ import annotations

import datetime
import itertools
from typing import Any

import pytest

from airflow_provider_kbatch.pipeline import records as rules
from airflow_provider_kbatch.pipeline.lineage import (
    Edge,
    TaskTimes,
    critical_path,
    run_graph,
    stage_timings,
)

NOW = datetime.datetime(2026, 12, 1, 12, 10, 0, tzinfo=datetime.timezone.utc)
DIGEST = {name: f"sha256:{name * 8}" for name in ("a", "b", "c", "d")}


def t(seconds: float) -> str:
    base = datetime.datetime(2026, 12, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)
    return (base + datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def stage(
    data: dict[str, str],
    task_id: str,
    *,
    runs: list[tuple[int, float, float | None, bool]],  # (try, start, end or None: running, succeeded)
    output: str | None = None,
    inputs: dict[str, tuple[str, str]] | None = None,  # input -> (producer, digest)
    queued: float = 0.0,  # the Job's suspended time per attempt
) -> dict[str, str]:
    key = rules.stage_key(task_id, -1)
    if inputs:
        data = rules.record_inputs(
            data,
            key,
            inputs={n: {"stage": p, "manifest_digest": d} for n, (p, d) in inputs.items()},
            at=t(runs[0][1]),
            task_id=task_id,
            map_index=-1,
        )
    for k, (try_number, start, end, ok) in enumerate(runs):
        job = f"kb-{task_id}-g{k}"
        data = rules.record_attempt_started(
            data, key, try_number=try_number, job=job, uid=f"u-{job}", spec_hash="h", index_map="0-3",
            at=t(start), task_id=task_id, map_index=-1,
        )  # fmt: skip
        if end is None:
            continue
        data = rules.record_attempt_finished(
            data, key, job=job, uid=f"u-{job}", succeeded=ok, at=t(end + 1), completed="0-3" if ok else "0-1",
            failed="" if ok else "2", reason=None if ok else "BackoffLimitExceeded",
            output={"name": output, "manifest_digest": DIGEST[output[0]]} if ok and output else None,
            job_times={"created": t(start), "started": t(start + queued), "ended": t(end)},
        )  # fmt: skip
    return data


def records(data: dict[str, str]) -> dict[str, rules.StageRecord]:
    out = {}
    for key in rules.stage_keys(data):
        record = rules.read_stage(data, key)
        assert record is not None and record.task_id is not None
        out[record.task_id] = record
    return out


def diamond(right_seconds: float, *, right_fails: bool = False) -> dict[str, str]:
    """extract -> (left, right) -> join, data edges only; left runs 10 s."""
    data: dict[str, str] = {}
    data = stage(data, "extract", runs=[(1, 0, 5, True)], output="a")
    data = stage(data, "left", runs=[(1, 6, 16, True)], output="b", inputs={"a": ("extract", DIGEST["a"])})
    data = stage(
        data, "right", runs=[(1, 6, 6 + right_seconds, not right_fails)], output="c",
        inputs={"a": ("extract", DIGEST["a"])},
    )  # fmt: skip
    if not right_fails:
        data = stage(
            data, "join", runs=[(1, 30, 32, True)], output="d",
            inputs={"b": ("left", DIGEST["b"]), "c": ("right", DIGEST["c"])},
        )  # fmt: skip
    return data


def test_the_lineage_of_a_diamond_comes_from_the_recorded_inputs() -> None:
    graph = run_graph(records(diamond(20)), [], {}, now=NOW).to_dict()
    edges = {(e["from"], e["to"], e["input"], e["freshness"]) for e in graph["edges"]}
    assert edges == {
        ("extract", "left", "a", "current"),
        ("extract", "right", "a", "current"),
        ("left", "join", "b", "current"),
        ("right", "join", "c", "current"),
    }
    assert all(e["kind"] == "data" and e["digest"].startswith("sha256:") for e in graph["edges"])
    assert {n["id"]: n["layer"] for n in graph["nodes"]} == {"extract": 0, "left": 1, "right": 1, "join": 2}


@pytest.mark.parametrize(
    ("right_seconds", "expected"),
    [(20, ["extract", "right", "join"]), (4, ["extract", "left", "join"])],
)
def test_the_critical_path_takes_the_slower_parallel_branch(
    right_seconds: float, expected: list[str]
) -> None:
    graph = run_graph(records(diamond(right_seconds)), [], {}, now=NOW).to_dict()
    path = graph["critical_path"]
    assert path["nodes"] == expected and path["tied"] is False
    runs = {n["id"]: n["timings"]["run"] for n in graph["nodes"]}
    assert runs == {"extract": 5.0, "left": 10.0, "right": float(right_seconds), "join": 2.0}
    assert path["seconds"] == sum(runs[n] for n in expected)
    critical = {(e["from"], e["to"]) for e in graph["edges"] if e["critical"]}
    assert critical == set(itertools.pairwise(expected))


def test_a_tie_is_reported_and_broken_by_node_ids() -> None:
    graph = run_graph(records(diamond(10)), [], {}, now=NOW)
    assert graph.critical_path.nodes == ("extract", "left", "join")  # "left" < "right"
    assert graph.critical_path.tied is True and graph.critical_path.seconds == 17.0


def test_a_failed_stage_ends_the_path_and_its_never_run_downstream_is_off_it() -> None:
    tasks = [
        TaskTimes("extract", state="success", is_stage=True),
        TaskTimes("left", state="success", is_stage=True),
        TaskTimes("right", state="failed", is_stage=True),
        TaskTimes("join", state="upstream_failed", is_stage=True),
    ]
    upstream = {"left": ["extract"], "right": ["extract"], "join": ["left", "right"]}
    graph = run_graph(records(diamond(30, right_fails=True)), tasks, upstream, now=NOW)
    nodes = {n.id: n for n in graph.nodes}
    assert nodes["right"].state == "failed" and nodes["join"].timings.total is None
    assert graph.critical_path.nodes == ("extract", "right")
    assert graph.critical_path.seconds == 35.0
    # join has no ledger record: Airflow's dependencies link it
    assert {(e.producer, e.consumer, e.kind) for e in graph.edges if e.consumer == "join"} == {
        ("left", "join", "dependency"),
        ("right", "join", "dependency"),
    }


def test_a_resumed_stage_counts_every_attempt_of_every_try() -> None:
    data = stage({}, "crunch", runs=[(1, 0, 30, False), (2, 100, 110, True)], queued=2)
    (record,) = records(data).values()
    timings = stage_timings(record, TaskTimes("crunch", queued=t(99), start=t(100), try_number=2), NOW)
    assert timings.run == (30 - 2) + (110 - 102)  # Job start -> end, both tries
    assert timings.job_queue == 4.0 and timings.airflow_queue == 1.0
    assert timings.queue == 5.0 and timings.total == 41.0
    graph = run_graph(records(data), [], {}, now=NOW)
    assert graph.nodes[0].tries == (1, 2) and graph.nodes[0].attempts == 2


def test_a_running_stage_counts_until_now_and_a_stage_without_job_times_uses_the_ledgers() -> None:
    data = stage({}, "live", runs=[(1, 0, None, True)])
    (record,) = records(data).values()
    assert stage_timings(record, None, NOW).run == 600.0
    raw = rules.load_record(stage({}, "old", runs=[(1, 0, 10, True)])[rules.stage_key("old", -1)])
    for field in ("job_created", "job_started", "job_ended"):  # recorded by an older provider
        del raw["attempts"][0][field]
    old = rules.parse_record(rules.dump(raw))
    assert stage_timings(old, None, NOW).run == 11.0 and stage_timings(old, None, NOW).job_queue is None


def test_a_stale_input_is_one_the_producer_re_recorded_since() -> None:
    data = diamond(20)
    data = rules.record_output(data, rules.stage_key("left", -1), name="b", manifest_digest="sha256:new")
    graph = run_graph(records(data), [], {}, now=NOW)
    fresh = {(e.producer, e.consumer): e.freshness for e in graph.edges}
    assert fresh[("left", "join")] == "stale" and fresh[("right", "join")] == "current"


def test_tasks_that_are_not_stages_join_the_graph_through_airflow_dependencies() -> None:
    data = stage({}, "ingest", runs=[(1, 0, 10, True)], output="a")
    tasks = [
        TaskTimes("ingest", state="success", is_stage=True, queued=t(-3), start=t(-1)),
        TaskTimes("cleanup", state="success", queued=t(20), start=t(21), end=t(61)),
    ]
    graph = run_graph(records(data), tasks, {"cleanup": ["ingest"]}, now=NOW)
    nodes = {n.id: n for n in graph.nodes}
    assert nodes["cleanup"].is_stage is False and nodes["cleanup"].timings.run == 40.0
    assert graph.critical_path.nodes == ("ingest", "cleanup")
    assert graph.critical_path.seconds == 2.0 + 10.0 + 1.0 + 40.0


def test_a_mapped_upstream_links_every_map_index() -> None:
    tasks = [TaskTimes("fan", i, state="success", start=t(0), end=t(i + 1)) for i in range(3)]
    tasks.append(TaskTimes("sink", state="success", start=t(10), end=t(11)))
    graph = run_graph({}, tasks, {"sink": ["fan"]}, now=NOW)
    assert {(e.producer, e.consumer) for e in graph.edges} == {(f"fan[{i}]", "sink") for i in range(3)}
    assert graph.critical_path.nodes == ("fan[2]", "sink")


def test_an_edge_closing_a_cycle_is_left_out_and_reported() -> None:
    edges = [Edge("a", "b", "data"), Edge("b", "a", "data"), Edge("b", "c", "dependency")]
    path, cyclic, _ = critical_path({"a": 1.0, "b": 2.0, "c": 3.0}, edges)
    assert len(cyclic) == 1 and path.seconds > 0 and path.nodes[-1] == "c"


def test_no_timing_at_all_gives_an_empty_path() -> None:
    graph = run_graph({}, [TaskTimes("a", state="scheduled")], {}, now=NOW)
    assert graph.critical_path.nodes == () and graph.critical_path.seconds == 0.0


def test_record_inputs_is_idempotent_and_keeps_the_latest_digest() -> None:
    key = rules.stage_key("join", -1)
    once = rules.record_inputs(
        {},
        key,
        inputs={"b": {"stage": "left", "manifest_digest": "sha256:1"}},
        at=t(0),
        task_id="join",
        map_index=-1,
    )
    assert (
        rules.record_inputs(
            once, key, inputs={"b": {"stage": "left", "manifest_digest": "sha256:1"}}, at=t(9)
        )
        == once
    )
    again = rules.record_inputs(
        once, key, inputs={"b": {"stage": "left", "manifest_digest": "sha256:2"}}, at=t(5)
    )
    record = rules.read_stage(again, key)
    assert record is not None and record.state == "pending"
    assert (record.inputs["b"].manifest_digest, record.inputs["b"].at) == ("sha256:2", t(5))
    with pytest.raises(rules.LedgerError, match="inputs: 'x'"):
        rules.record_inputs(once, key, inputs={"x": {"stage": "", "manifest_digest": "sha256:1"}}, at=t(0))


def test_the_jobs_own_times_keep_their_first_value() -> None:
    data = stage({}, "s", runs=[(1, 0, 10, True)], queued=3)
    key = rules.stage_key("s", -1)
    later = rules.record_attempt_finished(
        data, key, job="kb-s-g0", uid="u-kb-s-g0", succeeded=True, at=t(50),
        job_times={"created": t(40), "started": t(41), "ended": t(42), "bogus": t(1)},
    )  # fmt: skip
    attempt: Any = rules.load_record(later[key])["attempts"][0]
    assert (attempt["job_created"], attempt["job_started"], attempt["job_ended"]) == (t(0), t(3), t(10))
    assert "job_bogus" not in attempt


def test_a_task_queued_again_to_resume_after_a_deferral_has_no_airflow_queue_wait() -> None:
    data = stage({}, "deferred", runs=[(1, 0, 10, True)], queued=2)
    (record,) = records(data).values()
    resumed = TaskTimes("deferred", queued=t(11), start=t(-1), end=t(12))  # queued_dttm: the resume
    timings = stage_timings(record, resumed, NOW)
    assert timings.airflow_queue is None and timings.queue == 2.0 and timings.total == 10.0
