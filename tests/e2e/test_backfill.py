"""Example 4: a daily DAG backfilled with ``airflow backfill create`` and executed by a real
scheduler (LocalExecutor) and triggerer against the local cluster. Several dates run at once; no
two runs share a Job name, a ledger ConfigMap or a directory on the claim they all write to, and
each run's pods saw their own date and read back only their own rows. The runs' first stage
attaches the Asset of a namespace Airflow has not seen yet: exactly one run's event creates it
(``engine.first_event``), so Airflow's plain insert of a new Asset never runs twice."""

from __future__ import annotations

import datetime
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_kbatch.pipeline import records as ledger_rules
from airflow_provider_kbatch.pipeline import workspace as ws
from airflow_provider_kbatch.runtime.manifest import MANIFEST_PATH
from airflow_provider_kbatch.spec import names
from tests.conftest import wait_until
from tests.e2e.scheduler import AirflowScheduler, Run, overlapping

DAG_ID = "kbatch_example_daily"
DAG_FILE = "kbatch_daily.py"
FROM, TO = "2026-01-01", "2026-01-05"
MAX_ACTIVE_RUNS = 3
TASKS = ("extract", "report")
CLAIM, OUTPUT = "kbatch-daily", "squares"
MANAGED = f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY}"


def max_concurrent(runs: list[Run]) -> int:
    """The largest number of runs in the running state at the same instant."""
    events = []
    for run in runs:
        assert run.start_date and run.end_date, run
        events += [(run.start_date, 1), (run.end_date, -1)]
    events.sort()  # at equal times the end (-1) sorts first: touching intervals do not overlap
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def expected_dates() -> list[str]:
    start, end = datetime.date.fromisoformat(FROM), datetime.date.fromisoformat(TO)
    return [(start + datetime.timedelta(days=d)).isoformat() for d in range((end - start).days + 1)]


@pytest.mark.timeout(900)
def test_backfill_runs_dates_at_once_without_collisions(
    airflow_scheduler: AirflowScheduler,
    devcluster: Any,
) -> None:
    sched = airflow_scheduler
    namespace = devcluster.namespace("backfill")
    _create_claim(devcluster, namespace)
    sched.wait_dag(DAG_ID, timeout=120)
    errors = {f: e for f, e in sched.import_errors().items() if f.endswith(DAG_FILE)}
    assert not errors, errors

    started = time.monotonic()
    # created while the DAG is still paused (its runs wait, queued), then unpaused: the scheduler
    # writes nothing for this DAG while the backfill's runs go into the SQLite database
    backfill_id = sched.backfill(
        DAG_ID, FROM, TO, conf={"namespace": namespace}, max_active_runs=MAX_ACTIVE_RUNS
    )
    sched.unpause(DAG_ID)
    runs = sched.wait_runs(DAG_ID, len(expected_dates()), backfill_id=backfill_id, timeout=600)
    elapsed = time.monotonic() - started

    # every date ran, as a backfill run, and succeeded -- every task too
    assert sorted(r.logical_date.date().isoformat() for r in runs if r.logical_date) == expected_dates()
    assert {r.run_type for r in runs} == {"backfill"}
    assert [r.run_id for r in runs if r.state != "success"] == [], sched.report(DAG_ID)
    tries: dict[tuple[str, str], int] = {}
    for run in runs:
        states = sched.task_instances(DAG_ID, run.run_id)
        assert {t: s for (t, _), (s, _) in states.items()} == dict.fromkeys(TASKS, "success"), (
            run.run_id,
            states,
        )
        tries.update({(run.run_id, t): n for (t, _), (_, n) in states.items()})
    retried = {k: n for k, n in tries.items() if n > 1}
    print(  # noqa: T201 -- the figures, shown with -s
        f"backfill of {len(runs)} dates took {elapsed:.1f}s (max {MAX_ACTIVE_RUNS} at once); "
        f"deployment start-up {sched.startup_seconds:.1f}s; Airflow retries: {retried or 'none'}"
    )

    # the Asset of this new namespace was created by exactly one run's first event; the others
    # found it, or waited for it: Airflow's plain insert of a new Asset never ran twice
    uri = f"kbatch://{namespace}/{DAG_ID}/{OUTPUT}"
    turns = _asset_turns(sched.task_logs(DAG_ID, task_id="extract"), uri)
    assert [what for what, _ in turns.values()].count("first") == 1, turns
    assert all(what in ("first", "waited") for what, _ in turns.values()), turns
    waits = {run: seconds for run, (what, seconds) in turns.items() if what == "waited"}
    # a waiter sees the first run's event as soon as its success committed, not only once the
    # scheduler activated the new Asset (22 s later in one run, when the wait asked for that)
    assert all(seconds < 15 for seconds in waits.values()), turns
    print(f"  runs that waited for the new Asset: {waits or 'none'}")  # noqa: T201

    # several dates really ran at once, and never more than the backfill allows
    assert overlapping(runs), [(r.run_id, r.start_date, r.end_date) for r in runs]
    assert 2 <= max_concurrent(runs) <= MAX_ACTIVE_RUNS

    jobs = _check_jobs(devcluster, namespace, tries)
    _check_ledgers(devcluster, namespace, jobs)
    _check_claim(devcluster, namespace, runs)

    # each run's pods saw that run's own date and run id; the report read its own extract's results
    for run in runs:
        ds = run.logical_date.date().isoformat() if run.logical_date else None
        extract = sched.xcom(DAG_ID, run.run_id, "extract")
        assert extract["namespace"] == namespace, extract
        assert sorted(extract["results"]) == ["0", "1", "2"], extract
        assert {r["ds"] for r in extract["results"].values()} == {ds}, extract
        report = sched.xcom(DAG_ID, run.run_id, "report")
        assert report["results"]["0"] == {
            "ds": ds,
            "run_id": run.run_id,
            "input_run_id": run.run_id,
            "indexes": [0, 1, 2],
            "sum_of_squares": 5,
        }, report


def _asset_turns(logs: str, uri: str) -> dict[str, tuple[str, float | None]]:
    """Per run, what its extract's first event of ``uri`` did (``engine.first_event``): "first",
    "waited" with the seconds it waited, or anything that went wrong; runs that found the Asset
    existing log nothing."""
    turns: dict[str, tuple[str, float | None]] = {}
    waiting: dict[str, datetime.datetime] = {}
    for line in logs.splitlines():
        if not line.startswith("{") or f"Asset {uri}" not in line:
            continue
        entry = json.loads(line)
        run, event = entry["run_id"], entry["event"]
        at = datetime.datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00"))
        if "this run's event creates it" in event:
            turns[run] = ("first", None)
        elif "another run creates it" in event:
            waiting[run] = at
        elif "now exists" in event and run in waiting:
            turns[run] = ("waited", (at - waiting.pop(run)).total_seconds())
        else:
            turns[run] = (event, None)
    turns.update({run: ("never ended its wait", None) for run in waiting})
    return turns


def _create_claim(devcluster: Any, namespace: str) -> None:
    """The existing claim every run of the DAG writes to (each under its own sub-path)."""
    core = devcluster.core()
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": CLAIM},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "64Mi"}}},
        },
    )
    wait_until(
        lambda: core.read_namespaced_persistent_volume_claim(CLAIM, namespace).status.phase == "Bound",
        timeout=60,
        what=f"claim {namespace}/{CLAIM} bound",
    )


def _check_claim(devcluster: Any, namespace: str, runs: list[Run]) -> None:
    """On the volume itself: one directory per run, holding that run's manifest and rows only."""
    core = devcluster.core()
    volume = core.read_persistent_volume(
        core.read_namespaced_persistent_volume_claim(CLAIM, namespace).spec.volume_name
    )
    root = Path(volume.spec.host_path.path)
    assert sorted(p.name for p in (root / "runs").iterdir()) == sorted(names.run_key(r.run_id) for r in runs)
    digests = set()
    for run in runs:
        ds = run.logical_date.date().isoformat() if run.logical_date else None
        out = root / ws.output_subpath(run.run_id, OUTPUT)
        manifest = json.loads((out / MANIFEST_PATH).read_text())
        assert (manifest["run_id"], manifest["stage"]) == (run.run_id, "extract"), manifest
        rows = [
            json.loads(line) for f in manifest["files"] for line in (out / f["path"]).read_text().splitlines()
        ]
        assert sorted((r["ds"], r["index"]) for r in rows) == [(ds, i) for i in range(3)], rows
        digests.add(json.dumps(manifest["files"], sort_keys=True))
    assert len(digests) == len(runs)  # every run wrote its own files


def _check_jobs(devcluster: Any, namespace: str, tries: dict[tuple[str, str], int]) -> dict[str, str]:
    """Every Job belongs to one (run, task), is named by the pure naming rule, and no name repeats.

    Returns Job name -> run id."""
    jobs = devcluster.batch().list_namespaced_job(namespace, label_selector=MANAGED).items
    by_task: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for job in jobs:
        annotations = job.metadata.annotations or {}
        key = (annotations.get(names.ANNOTATION_RUN_ID, "?"), annotations.get(names.ANNOTATION_TASK_ID, "?"))
        by_task[key].append(job)
        generation = int(job.metadata.labels[names.LABEL_ATTEMPT])
        identity = names.JobIdentity(dag_id=DAG_ID, task_id=key[1], run_id=key[0])
        assert job.metadata.name == names.job_name(identity, generation), (key, job.metadata.name)
    assert set(by_task) == set(tries), sorted(by_task)
    for key, task_jobs in by_task.items():
        # one Job per task instance; an Airflow retry may add one of a new generation, never more
        assert 1 <= len(task_jobs) <= tries[key], (key, tries[key], [j.metadata.name for j in task_jobs])
        latest = max(task_jobs, key=lambda j: int(j.metadata.labels[names.LABEL_ATTEMPT]))
        # the claim mounted on this run's own sub-path: read-write for extract, read-only for report
        mounts = {
            (m.sub_path, bool(m.read_only))
            for m in latest.spec.template.spec.containers[0].volume_mounts
            if m.name == ws.VOLUME_NAME
        }
        assert mounts == {(ws.output_subpath(key[0], OUTPUT), key[1] == "report")}, (key, mounts)
        claims = {
            v.persistent_volume_claim.claim_name
            for v in latest.spec.template.spec.volumes
            if v.persistent_volume_claim
        }
        assert claims == {CLAIM}, (key, claims)
        conditions = {c.type: c.status for c in latest.status.conditions or []}
        assert conditions.get("Complete") == "True", (latest.metadata.name, conditions)
    all_names = [job.metadata.name for job in jobs]
    assert len(all_names) == len(set(all_names)), all_names
    return {job.metadata.name: job.metadata.annotations[names.ANNOTATION_RUN_ID] for job in jobs}


def _check_ledgers(devcluster: Any, namespace: str, run_of_job: dict[str, str]) -> None:
    """One ledger ConfigMap per run, and a run's ledger names only that run's Jobs."""
    run_ids = set(run_of_job.values())
    config_maps = (
        devcluster.core().list_namespaced_config_map(namespace, label_selector="kbatch.io/ledger=true").items
    )
    run_by_key = {names.run_key(run_id): run_id for run_id in run_ids}
    assert len(run_by_key) == len(run_ids), run_by_key  # run keys (label values) are distinct too
    ledger_keys = [cm.metadata.labels.get(names.LABEL_RUN_KEY) for cm in config_maps]
    assert sorted(ledger_keys) == sorted(run_by_key), ledger_keys  # one ledger per run, no more
    cm_names = [cm.metadata.name for cm in config_maps]
    assert len(set(cm_names)) == len(cm_names), cm_names
    digests = []
    for cm in config_maps:
        run_id = run_by_key[cm.metadata.labels[names.LABEL_RUN_KEY]]
        assert cm.metadata.name == ledger_rules.ledger_name(DAG_ID, run_id), cm.metadata.name
        for task_id in TASKS:
            record = ledger_rules.read_stage(cm.data, ledger_rules.stage_key(task_id))
            assert record is not None, (run_id, task_id, cm.data)
            assert record.state == "succeeded", (run_id, task_id, record)
            assert record.attempts, (run_id, task_id, record)
            # the Job of the last attempt exists and is this run's; no attempt names another run's Job
            assert run_of_job.get(record.attempts[-1].job) == run_id, (run_id, task_id, record.attempts)
            foreign = {a.job for a in record.attempts if run_of_job.get(a.job, run_id) != run_id}
            assert not foreign, (run_id, task_id, foreign)
        # the run's output: written on the shared claim, under the digest of this run's extract
        workspace = ws.read_workspace(cm.data)
        extract = ledger_rules.read_stage(cm.data, ledger_rules.stage_key("extract"))
        assert workspace is not None and workspace.claim == CLAIM and workspace.run_id == run_id, workspace
        assert extract is not None and extract.output is not None, extract
        assert workspace.outputs[OUTPUT].claim == CLAIM, workspace.outputs
        assert workspace.outputs[OUTPUT].manifest_digest == extract.output.manifest_digest, workspace.outputs
        digests.append(extract.output.manifest_digest)
    assert len(set(digests)) == len(config_maps), digests
