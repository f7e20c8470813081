"""Compensation and memoization: the pure rules (quarantine moves, the compensation Job's spec,
ledger merges, the cache key and its bounded index) and the operator's checks of the options."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_kbatch.pipeline import compensation as comp
from airflow_provider_kbatch.pipeline import memo
from airflow_provider_kbatch.pipeline import records as rules
from airflow_provider_kbatch.pipeline.contracts import Contract
from airflow_provider_kbatch.pipeline.handoff import InputCheckError, check_inputs
from airflow_provider_kbatch.pipeline.workspace import Ports, Workspace
from airflow_provider_kbatch.runtime import manifest as fmt
from airflow_provider_kbatch.runtime.outputs import OutputWriter
from airflow_provider_kbatch.runtime.quarantine import REPORT, quarantine
from airflow_provider_kbatch.spec.actions import StageAction, as_action, cache_problems
from airflow_provider_kbatch.spec.errors import KbatchSpecError
from airflow_provider_kbatch.spec.intervals import IndexSet
from airflow_provider_kbatch.spec.manifest import build_job_manifest
from airflow_provider_kbatch.spec.names import JobIdentity, selector_for
from airflow_provider_kbatch.spec.stage import StageSpec
from airflow_provider_kbatch.spec.validation import validate_stage

AT = "2026-01-01T00:00:00.000000Z"
IDENTITY = JobIdentity(dag_id="etl", task_id="load", run_id="manual__1", try_number=2)


# --------------------------------------------------------------------------- quarantine (runtime)


def _writer(out: Path, index: int) -> OutputWriter:
    return OutputWriter(out, index=index, stage="load", run_id="r", image="i", env={})


def test_quarantine_moves_what_no_kept_part_lists_and_keeps_completed_indexes(tmp_path: Path) -> None:
    out, target = tmp_path / "out", tmp_path / "q"
    with _writer(out, 0) as w:
        w.write_text("part-0.txt", "zero")
    with _writer(out, 2) as w:  # committed but not kept (failed after its commit)
        w.write_text("part-2.txt", "two")
    (out / "part-1.txt").write_text("half")  # index 1 failed before committing
    (out / "sub").mkdir()
    (out / "sub" / ".tmp-x").write_text("tmp")
    report = quarantine(out, target, [0])
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "_kbatch/parts/0.json",
        "part-0.txt",
    ]
    assert report["moved"] == ["_kbatch/parts/2.json", "part-1.txt", "part-2.txt", "sub/.tmp-x"]
    assert (target / "part-1.txt").read_text() == "half" and not (out / "sub").exists()
    assert json.loads((target / REPORT).read_text())["moved"] == report["moved"]
    again = quarantine(out, target, [0])  # idempotent: nothing more to move, the report kept
    assert again["moved"] == report["moved"] and report["bytes"] == again["bytes"]


def test_quarantine_without_kept_indexes_moves_everything(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with _writer(out, 0) as w:
        w.write_text("a.txt", "a")
    report = quarantine(out, tmp_path / "q", [])
    assert set(report["moved"]) == {"a.txt", fmt.PARTS_DIR + "/0.json"}
    assert [p for p in out.rglob("*") if p.is_file()] == []


def test_a_part_that_names_another_index_is_not_kept(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with _writer(out, 0) as w:
        w.write_text("a.txt", "a")
    (out / fmt.PARTS_DIR / "0.json").rename(out / fmt.PARTS_DIR / "1.json")
    report = quarantine(out, tmp_path / "q", [1])
    assert "a.txt" in report["moved"]


# --------------------------------------------------------------------------- the compensation Job


STAGE = StageSpec(image="worker:1", command=("python", "-m", "w"), env={"PYTHONPATH": "/app"}, completions=4)


def test_the_compensation_identity_is_never_the_stages() -> None:
    other = comp.compensation_identity(IDENTITY)
    assert other.task_id == "load:compensate" and selector_for(other) != selector_for(IDENTITY)


@pytest.mark.parametrize(
    ("when", "final", "due"),
    [("each_try", False, True), ("each_try", True, True), ("final", False, False), ("final", True, True)],
)
def test_when_the_action_is_due(when: str, final: bool, due: bool) -> None:
    assert comp.action_due(StageAction(command=["x"], when=when), final=final) is due  # type: ignore[arg-type]
    assert comp.action_due(None, final=True) is False


def test_final_follows_airflows_max_tries_and_retryability() -> None:
    assert comp.is_final(try_number=1, max_tries=1, retries=1, retryable=True) is False
    assert comp.is_final(try_number=2, max_tries=1, retries=1, retryable=True) is True
    assert comp.is_final(try_number=1, max_tries=None, retries=0, retryable=True) is True
    assert comp.is_final(try_number=1, max_tries=5, retries=5, retryable=False) is True


def test_quarantine_only_job_is_valid_and_keeps_the_stages_pod_settings() -> None:
    spec, path = comp.compensation_spec(
        STAGE, IDENTITY, claim="ws", output="rows", action=None, failed=IndexSet.parse("1"),
        keep=IndexSet.parse("0,2-3"), final=False,
    )  # fmt: skip
    assert path is not None and path.endswith("/quarantine/load/try-2")
    validate_stage(spec)
    assert spec.command == comp.QUARANTINE_COMMAND and spec.completions == 1 and spec.backoff_limit == 0
    assert spec.env["KBATCH_KEEP_INDEXES"] == "0,2-3" and spec.env["PYTHONPATH"] == "/app"
    assert spec.env["KBATCH_QUARANTINE_SOURCE"] == "/kbatch/run/outputs/rows"
    assert spec.env["KBATCH_QUARANTINE_PATH"] == "/kbatch/run/quarantine/load/try-2"
    assert spec.pod_security == STAGE.pod_security and spec.run_as == STAGE.run_as


def test_with_an_action_the_quarantine_runs_first_and_the_action_sees_the_context() -> None:
    action = StageAction(command=["undo"], image="undo:1", env={"T": "x"})
    spec, path = comp.compensation_spec(
        STAGE, IDENTITY, claim="ws", output="rows", action=action, failed=IndexSet.parse("1"),
        keep=IndexSet.parse("0"), final=True,
    )  # fmt: skip
    job = build_job_manifest(spec, comp.compensation_identity(IDENTITY), generation=2, namespace="b")
    pod = job["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    main = pod["containers"][0]
    assert init["name"] == comp.QUARANTINE_CONTAINER and init["image"] == "worker:1"
    assert main["image"] == "undo:1" and main["command"] == ["undo"]
    env = {e["name"]: e.get("value") for e in main["env"]}
    assert env["KBATCH_FAILED_INDEXES"] == "1" and env["KBATCH_FINAL"] == "true" and env["T"] == "x"
    assert env["KBATCH_QUARANTINE_PATH"] == "/kbatch/run/quarantine/load/try-2" and path is not None
    assert main["volumeMounts"][0]["readOnly"] is True
    assert init["securityContext"]["runAsNonRoot"] is True  # restricted, like the stage


def test_without_a_workspace_only_the_action_runs_and_nothing_is_quarantined() -> None:
    spec, path = comp.compensation_spec(
        STAGE, IDENTITY, claim=None, output=None, action=StageAction(command=["undo"]),
        failed=IndexSet.parse("3"), keep=IndexSet(), final=False,
    )  # fmt: skip
    assert path is None and spec.env["KBATCH_QUARANTINE_PATH"] == "" and spec.volumes == ()
    with pytest.raises(ValueError):
        comp.compensation_spec(
            STAGE,
            IDENTITY,
            claim=None,
            output=None,
            action=None,
            failed=IndexSet(),
            keep=IndexSet(),
            final=False,
        )


def _failed_stage() -> dict[str, str]:
    key = rules.stage_key("load")
    data = rules.record_attempt_started(
        {}, key, try_number=1, job="j1", uid="u1", spec_hash="h", index_map="0-1", at=AT, task_id="load"
    )
    return rules.record_attempt_finished(data, key, job="j1", uid="u1", succeeded=False, at=AT, completed="0")


def test_the_compensation_is_recorded_on_the_failed_attempt() -> None:
    key = rules.stage_key("load")
    entry = {"job": "c1", "state": "succeeded", "quarantine": "runs/x/quarantine/load/try-1"}
    data = comp.record_compensation(_failed_stage(), key, job="j1", uid="u1", compensation=entry)
    assert comp.compensations(data, key) == [{**entry, "try_number": 1, "attempt_job": "j1"}]
    assert comp.record_compensation(data, key, job="j1", uid="u1", compensation=entry) == data
    assert rules.read_stage(data, key).state == "failed"  # the record stays readable
    with pytest.raises(rules.LedgerError):
        comp.record_compensation(data, key, job="nope", uid=None, compensation=entry)


def test_a_consumer_refuses_the_output_of_a_failed_stage() -> None:
    with pytest.raises(InputCheckError, match="is failed"):
        check_inputs(_failed_stage(), stage="use", run_id="r", inputs={"rows": "load"}, check_location=False)


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"cmd": ["x"]}, "on_failure"),
        ({"image": "x"}, "on_failure.command"),
        ("undo", "on_failure"),
        (StageAction(command="undo"), "on_failure.command"),  # type: ignore[arg-type]
        (StageAction(command=["x"], when="sometimes"), "on_failure.when"),  # type: ignore[arg-type]
        (StageAction(command=["x"], timeout_seconds=0), "on_failure.timeout_seconds"),
    ],
)
def test_a_bad_on_failure_is_named(value: Any, field: str) -> None:
    with pytest.raises(KbatchSpecError) as err:
        as_action(value)
    assert err.value.field == field


def test_on_failure_as_a_dict() -> None:
    assert as_action({"command": ["undo"], "when": "final"}) == StageAction(command=("undo",), when="final")
    assert as_action(None) is None


@pytest.mark.parametrize(
    ("cache", "version", "fields"),
    [
        (True, None, []),
        (True, "2", []),
        ("yes", None, ["cache"]),
        (True, 7, ["cache_version"]),
        (True, "", ["cache_version"]),
        (False, "2", ["cache_version"]),
        (True, "x" * 64, ["cache_version"]),
    ],
)
def test_cache_options(cache: Any, version: Any, fields: list[str]) -> None:
    assert [p.field for p in cache_problems(cache, version)] == fields


def test_a_cached_output_needs_a_shared_claim() -> None:
    assert memo.cache_workspace_problem(True, Workspace(create=True), "rows") is not None
    assert memo.cache_workspace_problem(True, None, "rows") is not None
    assert memo.cache_workspace_problem(True, Workspace(claim_name="shared"), "rows") is None
    assert memo.cache_workspace_problem(True, None, None) is None
    assert memo.cache_workspace_problem(False, Workspace(create=True), "rows") is None


# --------------------------------------------------------------------------- the cache key and index


def _key(**changes: Any) -> str:
    args: dict[str, Any] = {
        "dag_id": "etl",
        "task_id": "load",
        "map_index": -1,
        "spec_hash": "s1",
        "ports": Ports(output="rows", inputs={"raw": "ingest"}, accepts={"raw": Contract("raw", "1.0")}),
        "input_digests": {"raw": "sha256:a"},
        "claim": "shared",
        "cache_version": None,
    }
    return memo.cache_key(**{**args, **changes})


def test_every_input_of_the_key_changes_it() -> None:
    base = _key()
    assert base == _key() and base.startswith("sha256:")
    changed = [
        _key(spec_hash="s2"),  # image, command, args, env
        _key(input_digests={"raw": "sha256:b"}),
        _key(cache_version="2"),
        _key(claim="other"),
        _key(map_index=0),
        _key(ports=Ports(output="rows", inputs={"raw": "ingest"}, accepts={"raw": Contract("raw", "2.0")})),
    ]
    assert len({base, *changed}) == 1 + len(changed)


def _entry(key: str, at: str, run_id: str = "r1") -> memo.CacheEntry:
    return memo.CacheEntry(
        key=key, run_id=run_id, task_id="load", map_index=-1, spec_hash="h", completions=2,
        output={"name": "rows", "manifest_digest": "sha256:" + "0" * 64}, claim="shared", claim_uid="u",
        subpath="runs/r1/outputs/rows", created_at=at, last_used=at,
    )  # fmt: skip


def test_the_index_is_bounded_lru_and_ages_out() -> None:
    data: dict[str, str] = {}
    for i in range(memo.MAX_ENTRIES + 5):
        at = f"2026-01-01T00:{i:02d}:00Z"
        data = memo.put_entry(data, _entry(f"k{i}", at), now=at)
    entries = memo.read_entries(data)
    assert len(entries) == memo.MAX_ENTRIES and entries[0].key == f"k{memo.MAX_ENTRIES + 4}"
    assert memo.find(data, "k0", now=AT) is None  # dropped, least recently used
    oldest = entries[-1].key
    data = memo.touch(data, oldest, now="2026-01-02T00:00:00Z")
    assert memo.read_entries(data)[0].key == oldest and memo.read_entries(data)[0].hits == 1
    assert len(json.dumps(data)) < 16 * 1024, "a few KiB, far below the 1 MiB object limit"
    assert memo.find(data, oldest, now="2026-03-01T00:00:00Z") is None  # older than the retention
    assert memo.find(memo.drop(data, oldest, now="2026-01-02T00:00:00Z"), oldest, now=AT) is None


def test_a_cache_hit_is_a_succeeded_record_without_a_job() -> None:
    key = rules.stage_key("load")
    entry = _entry("k", AT)
    data = memo.record_cache_hit(
        {}, key, entry=entry, try_number=1, spec_hash="wired", at=AT, task_id="load", map_index=-1
    )
    record = rules.read_stage(data, key)
    assert record.state == "succeeded" and record.completed == IndexSet.full(2)
    assert record.output.manifest_digest == entry.output["manifest_digest"]
    assert record.attempts[-1].job == memo.hit_job("r1")
    assert memo.cache_hit_of(data, key) == {"hit": True, "key": "k", "source_run_id": "r1"}
    assert memo.cache_hit_of(_failed_stage(), key) is None


def test_an_input_of_a_cache_hit_is_mounted_from_the_earlier_runs_directory() -> None:
    from airflow_provider_kbatch.pipeline.workspace import wiring

    wired = wiring(
        Workspace(claim_name="shared"), Ports(inputs={"rows": "load"}), claim="shared", run_id="r2",
        task_id="use", image="i", input_subpaths={"rows": "runs/r1/outputs/rows"},
    )  # fmt: skip
    (mount,) = wired.mounts
    assert mount["subPath"] == "runs/r1/outputs/rows" and mount["readOnly"] is True
