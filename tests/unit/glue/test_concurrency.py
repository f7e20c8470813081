"""concurrency_policy= through the operator and its trigger, against an in-memory hook: who blocks
a Forbid stage, the stage's lock (taken by CAS, stale holders), Replace's deletions and ledger
records, timeouts and argument checks."""

from __future__ import annotations

import asyncio
import datetime
import json
import re
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from airflow_provider_kbatch.engine import concurrency as engine
from airflow_provider_kbatch.operators import job as job_module
from airflow_provider_kbatch.pipeline import records as rules
from airflow_provider_kbatch.spec.concurrency import (
    HOLDER_GRACE_SECONDS,
    REPLACED,
    Holder,
    concurrency_problems,
    holder_of,
    lock_name,
    take,
    task_selector,
)
from airflow_provider_kbatch.spec.manifest import build_job_manifest
from airflow_provider_kbatch.spec.names import JobIdentity
from airflow_provider_kbatch.spec.stage import StageSpec
from airflow_provider_kbatch.triggers.concurrency import KbatchConcurrencyTrigger
from tests.unit.glue.test_operator_unit import NS, RUN, FakeHook, context, operator

OTHER = "scheduled__2025-12-31T00:00:00+00:00"


def other_run_job(hook: FakeHook, *, finished: bool = False, run_id: str = OTHER) -> str:
    """A Job of the same stage (dag etl, task ingest) created by another run."""
    identity = JobIdentity(dag_id="etl", task_id="ingest", run_id=run_id)
    job = hook.create_job(NS, build_job_manifest(StageSpec(image="i"), identity, generation=1, namespace=NS))
    if finished:
        job["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
        hook.jobs[job["metadata"]["name"]] = job
    return str(job["metadata"]["name"])


def lock_of(hook: FakeHook) -> Holder | None:
    cm = hook.config_maps.get(lock_name(JobIdentity("etl", "ingest", RUN)))
    return holder_of((cm or {}).get("data"))


def created(hook: FakeHook) -> list[str]:
    return [c[2]["metadata"]["name"] for c in hook.calls if c[0] == "create_job"]


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("policy", "timeout", "expected"),
    [
        ("Allow", None, []),
        ("Forbid", datetime.timedelta(minutes=1), []),
        ("Forbid", 30, []),
        ("Never", None, ["concurrency_policy: must be one of Allow, Forbid, Replace, got 'Never'"]),
        ("Forbid", -1, ["concurrency_timeout: must be positive, got -1"]),
        ("Forbid", "10m", ["concurrency_timeout: must be a timedelta or seconds, got str"]),
        ("Replace", 10, ["concurrency_timeout: only applies to concurrency_policy='Forbid', not 'Replace'"]),
    ],
)
def test_arguments_are_checked(policy: Any, timeout: Any, expected: list[str]) -> None:
    found = [str(e) for e in concurrency_problems(policy, timeout)]
    assert [f[: len(e)] for f, e in zip(found, expected, strict=False)] == expected and len(found) == len(
        expected
    )


def test_a_bad_policy_fails_the_operator_before_any_request() -> None:
    hook = FakeHook()
    with pytest.raises(AirflowFailException, match="concurrency_policy: must be one of"):
        operator(hook, concurrency_policy="Sometimes").execute(context())
    assert hook.calls == []


# --------------------------------------------------------------------------- the lock (pure)


def test_take_is_a_compare_and_swap_from_the_holder_seen() -> None:
    me, stale, other = Holder(RUN, "kb-me", 2.0), Holder("r0", "kb-0", 1.0), Holder("r9", "kb-9", 1.5)
    assert holder_of(take({}, me, only_from=None)) == me  # free
    assert holder_of(take({"holder": stale.dump()}, me, only_from=stale)) == me  # the stale one we saw
    # another run took it since: unchanged, the caller lost the race
    assert holder_of(take({"holder": other.dump()}, me, only_from=stale)) == other
    assert holder_of(take({"holder": other.dump()}, me, only_from="any")) == me  # Replace
    assert holder_of({"holder": "not json"}) is None


def test_a_holder_without_its_job_blocks_only_for_the_grace_period() -> None:
    me = JobIdentity("etl", "ingest", RUN)
    lock = {"data": {"holder": Holder(OTHER, "kb-missing", 100.0).dump()}}
    blocker, stale = engine.forbid_blocker([], lock, me, now=100.0 + HOLDER_GRACE_SECONDS - 1)
    assert blocker == engine.Blocker(OTHER, "kb-missing", "lock") and stale is None
    blocker, stale = engine.forbid_blocker([], lock, me, now=100.0 + HOLDER_GRACE_SECONDS + 1)
    assert blocker is None and stale == Holder(OTHER, "kb-missing", 100.0)


def test_the_task_selector_spans_runs_but_not_tasks() -> None:
    selector = task_selector(JobIdentity("etl", "ingest", RUN))
    assert "kbatch.io/run-key" not in selector
    assert "kbatch.io/dag-id=etl" in selector and "kbatch.io/task-id=ingest" in selector


# --------------------------------------------------------------------------- Forbid


def test_forbid_defers_while_another_runs_job_is_active(capsys: pytest.CaptureFixture[str]) -> None:
    hook = FakeHook()
    blocking = other_run_job(hook)
    op = operator(hook, concurrency_policy="Forbid", concurrency_timeout=600)
    with pytest.raises(TaskDeferred) as deferral:
        op.execute(context())
    trigger = deferral.value.trigger
    assert isinstance(trigger, KbatchConcurrencyTrigger)
    assert deferral.value.method_name == "execute_after_concurrency"
    assert created(hook) == [blocking], "nothing submitted while waiting"
    assert lock_of(hook) is None, "the lock is not taken while blocked"
    assert f"waiting for run {OTHER}'s Job {blocking} (concurrency_policy=Forbid)" in capsys.readouterr().out
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_kbatch.triggers.concurrency.KbatchConcurrencyTrigger"
    json.dumps(kwargs)  # JSON only
    assert kwargs["task_id"] == "ingest" and kwargs["run_id"] == RUN and kwargs["deadline"] is not None
    assert deferral.value.kwargs == {"deadline": kwargs["deadline"]}


def test_forbid_submits_and_takes_the_lock_once_the_other_job_finished() -> None:
    hook = FakeHook()
    other_run_job(hook, finished=True)
    with pytest.raises(TaskDeferred):  # the Job wait
        operator(hook, concurrency_policy="Forbid").execute(context())
    mine = created(hook)[-1]
    assert lock_of(hook) is not None and lock_of(hook).run_id == RUN and lock_of(hook).job == mine  # type: ignore[union-attr]


def test_forbid_times_out_without_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(job_module, "POLL_SECONDS", 0.01)
    hook = FakeHook()
    other_run_job(hook)
    op = operator(hook, concurrency_policy="Forbid", concurrency_timeout=0.05, deferrable=False)
    with pytest.raises(AirflowFailException, match=r"waited more than concurrency_timeout=0.05s for run "):
        op.execute(context())
    assert len(created(hook)) == 1  # only the other run's


def test_back_from_the_trigger_a_timeout_fails_and_free_submits() -> None:
    hook = FakeHook()
    op = operator(hook, concurrency_policy="Forbid", concurrency_timeout=60)
    timeout = {"status": "timeout", "namespace": NS, "blocked_by_run": OTHER, "blocked_by_job": "kb-x"}
    with pytest.raises(AirflowFailException, match=re.escape(f"for run {OTHER}'s Job kb-x")):
        op.execute_after_concurrency(context(), timeout, deadline=1.0)
    with pytest.raises(TaskDeferred) as deferral:
        op.execute_after_concurrency(context(), {"status": "free", "namespace": NS}, deadline=None)
    assert deferral.value.method_name == "execute_complete" and len(created(hook)) == 1


class AsyncFake:
    def __init__(self, hook: FakeHook) -> None:
        self.hook = hook

    async def list_jobs(self, namespace: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        return self.hook.list_jobs(namespace, label_selector)

    async def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.hook.get_config_map(namespace, name)


async def _events(trigger: KbatchConcurrencyTrigger) -> list[dict[str, Any]]:
    return [e.payload async for e in trigger.run()]


def test_the_trigger_yields_free_when_the_other_job_finished_or_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hook = FakeHook()
    name = other_run_job(hook)
    args = {"namespace": NS, "dag_id": "etl", "task_id": "ingest", "run_id": RUN, "poll_seconds": 0.01}
    trigger = KbatchConcurrencyTrigger(**args, deadline=0.0)
    monkeypatch.setattr(KbatchConcurrencyTrigger, "async_hook", lambda self: AsyncFake(hook))
    assert asyncio.run(_events(trigger)) == [
        {"status": "timeout", "namespace": NS, "blocked_by_run": OTHER, "blocked_by_job": name}
    ]
    hook.jobs[name]["status"] = {"conditions": [{"type": "Failed", "status": "True"}]}
    free = KbatchConcurrencyTrigger(**args)
    assert asyncio.run(_events(free)) == [{"status": "free", "namespace": NS}]


# --------------------------------------------------------------------------- Replace


def test_replace_records_in_the_other_runs_ledger_then_deletes_its_job() -> None:
    hook = FakeHook()
    victim = other_run_job(hook)
    with pytest.raises(TaskDeferred):
        operator(hook, concurrency_policy="Replace").execute(context())
    assert ("delete_job", NS, victim, "Background") in hook.calls
    ledger = hook.config_maps[rules.ledger_name("etl", OTHER)]
    record = rules.read_stage(ledger["data"], rules.stage_key("ingest"))
    assert record is not None and record.state == "failed"
    assert record.attempts[-1].job == victim
    assert (record.attempts[-1].reason or "").startswith(f"{REPLACED}{RUN} (concurrency_policy=Replace)")
    writes = [c for c in hook.calls if c[0] in ("update_config_map_cas", "delete_job")]
    assert writes.index(("delete_job", NS, victim, "Background")) > writes.index(
        ("update_config_map_cas", NS, rules.ledger_name("etl", OTHER))
    ), "the ledger says why before the Job goes"
    assert lock_of(hook) is not None and lock_of(hook).run_id == RUN  # type: ignore[union-attr]


def test_replace_deletes_its_own_job_when_a_newer_run_took_the_lock() -> None:
    hook = FakeHook()
    newer = "manual__newer"
    original = hook.create_job

    def create_then_newer_takes_the_lock(namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
        job = original(namespace, manifest)
        name = lock_name(JobIdentity("etl", "ingest", RUN))
        hook.config_maps[name] = {"data": {"holder": Holder(newer, "kb-newer", 1.0).dump()}}
        return job

    hook.create_job = create_then_newer_takes_the_lock  # type: ignore[method-assign]
    with pytest.raises(AirflowFailException, match=f"{REPLACED}{newer}"):
        operator(hook, concurrency_policy="Replace").execute(context())
    mine = created(hook)[-1]
    assert mine not in hook.jobs and ("delete_job", NS, mine, "Background") in hook.calls
    record = rules.read_stage(
        hook.config_maps[rules.ledger_name("etl", RUN)]["data"], rules.stage_key("ingest")
    )
    assert record is not None and record.state == "failed"


def test_a_replaced_runs_deleted_job_fails_its_task_without_retries() -> None:
    hook = FakeHook()
    with pytest.raises(TaskDeferred):
        operator(hook).execute(context())
    mine = created(hook)[-1]
    engine.record_replaced(hook, NS, hook.jobs[mine], by_run="manual__newer")
    hook.jobs.pop(mine)
    event = {"status": "deleted", "namespace": NS, "name": mine}
    with pytest.raises(AirflowFailException, match=f"{REPLACED}manual__newer"):
        operator(hook).execute_complete(context(), event)
