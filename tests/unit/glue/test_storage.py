"""storage.py (workspace I/O), the output sensor and the cleanup operator against an in-memory hook:
which requests are made, in what order, and what is refused before anything is created."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException, TaskDeferred

from airflow_provider_kbatch.engine import storage
from airflow_provider_kbatch.errors import AlreadyExists
from airflow_provider_kbatch.operators.workspace import unfinished_tasks
from airflow_provider_kbatch.pipeline import output_lookup
from airflow_provider_kbatch.pipeline import records as rules
from airflow_provider_kbatch.pipeline import workspace as ws
from airflow_provider_kbatch.pipeline.contracts import Contract
from airflow_provider_kbatch.pipeline.handoff import InputCheckError
from airflow_provider_kbatch.sensors.output import KbatchOutputSensor, find_output
from airflow_provider_kbatch.spec.names import JobIdentity
from airflow_provider_kbatch.spec.stage import StageSpec
from airflow_provider_kbatch.triggers.output import KbatchOutputTrigger

NS = "batch"
RUN = "manual__2026-01-01T00:00:00+00:00"
LOG = logging.getLogger("test")
WS = ws.Workspace(create=True, size="1Gi")
ORDERS = Contract("orders", "1.0", {"id": "int", "amount": "str"})


class FakeHook:
    """ConfigMaps and PVCs in dicts; ``calls`` records every verb and name."""

    def __init__(self) -> None:
        self.config_maps: dict[str, dict[str, str]] = {}
        self.annotations: dict[str, dict[str, str]] = {}  # per ConfigMap, as the CAS loop writes them
        self.pvcs: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.uids = 0
        self.before_create: Callable[[dict[str, Any]], None] | None = None

    def _object(self, name: str) -> dict[str, Any]:
        metadata = {"name": name, "annotations": dict(self.annotations.get(name, {}))}
        return {"metadata": metadata, "data": dict(self.config_maps[name])}

    def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("get_config_map", name))
        return self._object(name) if name in self.config_maps else None

    def list_config_maps(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        """Every ledger (the selector is the real API server's business; e2e tests cover it)."""
        self.calls.append(("list_config_maps", label_selector))
        return [{"metadata": {"name": n}, "data": dict(d)} for n, d in self.config_maps.items()]

    def update_config_map_cas(
        self,
        namespace: str,
        name: str,
        mutate: Any,
        *,
        labels: Any = None,
        annotations: Any = None,
        check: Any = None,
    ) -> dict[str, str]:
        self.calls.append(("update_config_map", name))
        if check is not None and name in self.config_maps:
            check(self._object(name))
        self.config_maps[name] = mutate(dict(self.config_maps.get(name, {})))
        self.annotations[name] = {**(annotations or {}), **self.annotations.get(name, {})}
        return dict(self.config_maps[name])

    def get_pvc(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("get_pvc", name))
        return self.pvcs.get(name)

    def create_pvc(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        self.calls.append(("create_pvc", name))
        if self.before_create:
            self.before_create(body)
        if name in self.pvcs:
            raise AlreadyExists(409, "AlreadyExists", f"{name} exists", [])
        self.uids += 1
        self.pvcs[name] = {**body, "metadata": {**body["metadata"], "uid": f"u{self.uids}"}}
        return self.pvcs[name]

    def delete_pvc(self, namespace: str, name: str) -> bool:
        self.calls.append(("delete_pvc", name))
        return self.pvcs.pop(name, None) is not None

    def verbs(self, verb: str) -> list[str]:
        return [n for v, n in self.calls if v == verb]


def ident(task: str) -> JobIdentity:
    return JobIdentity(dag_id="etl", task_id=task, run_id=RUN)


def prepare(hook: FakeHook, task: str, ports: ws.Ports, workspace: ws.Workspace = WS, **kw: Any) -> Any:
    return storage.prepare_stage(
        hook,
        NS,
        ident(task),
        workspace=workspace,
        ports=ports,
        spec=StageSpec(image="img", completions=2),
        declared=kw.pop("declared", {}),
        logical_date="2026-01-01T00:00:00+00:00",
        log=LOG,
    )


def succeed(
    hook: FakeHook, task: str, output: str, digest: str = "sha256:d1", contract: Contract = ORDERS
) -> None:
    """What finish_stage records for a producer, then the binding the operator adds."""
    key = rules.stage_key(task)
    name = rules.ledger_name("etl", RUN)

    def mutate(data: dict[str, str]) -> dict[str, str]:
        data = rules.record_attempt_started(
            data, key, try_number=1, job="j", uid="x", spec_hash="h", index_map="0-1", at="t", task_id=task
        )
        out = {
            "name": output,
            "manifest_digest": digest,
            "contract": {"name": contract.name, "version": contract.version},
        }
        return rules.record_attempt_finished(data, key, job="j", uid="x", succeeded=True, at="t", output=out)

    hook.update_config_map_cas(NS, name, mutate)
    assert storage.record_output_location(hook, NS, ident(task), output) is not None


def test_first_stage_creates_the_claim_and_the_next_one_reuses_it() -> None:
    hook = FakeHook()
    first = prepare(hook, "ingest", ws.Ports.build(output="raw"))
    g1 = ws.claim_name("etl", RUN, 1)
    assert first.claim == g1 and hook.verbs("create_pvc") == [g1]
    assert hook.pvcs[g1]["metadata"]["labels"]["kbatch.io/workspace"] == "true"
    assert first.spec.volumes[0]["persistentVolumeClaim"]["claimName"] == g1
    record = ws.read_workspace(hook.config_maps[rules.ledger_name("etl", RUN)])
    assert record is not None and (record.claim, record.uid, record.logical_date) == (
        g1,
        "u1",
        "2026-01-01T00:00:00+00:00",
    )
    succeed(hook, "ingest", "raw")
    second = prepare(hook, "transform", ws.Ports.build(inputs=["raw"], output="clean"))
    assert second.claim == g1 and hook.verbs("create_pvc") == [g1]
    assert second.inputs["raw"].manifest_digest == "sha256:d1"


def test_a_consumer_records_what_it_consumes_in_its_ledger_record() -> None:
    hook = FakeHook()
    prepare(hook, "ingest", ws.Ports.build(output="raw"))
    succeed(hook, "ingest", "raw", digest="sha256:d7")
    writes = hook.verbs("update_config_map")
    prepare(hook, "transform", ws.Ports.build(inputs={"raw": "ingest"}, output="clean"))
    data = hook.config_maps[rules.ledger_name("etl", RUN)]
    record = rules.read_stage(data, rules.stage_key("transform"))
    assert record is not None and record.state == "pending" and record.task_id == "transform"
    assert {n: (i.stage, i.manifest_digest) for n, i in record.inputs.items()} == {
        "raw": ("ingest", "sha256:d7")
    }
    assert len(hook.verbs("update_config_map")) == len(writes) + 1  # with the workspace record, one write
    ingest = rules.read_stage(data, rules.stage_key("ingest"))
    assert ingest is not None and ingest.inputs == {}


def test_a_concurrent_create_is_adopted() -> None:
    hook = FakeHook()

    def race(body: dict[str, Any]) -> None:  # another stage creates it between our get and create
        hook.before_create = None
        hook.create_pvc(NS, body)

    hook.before_create = race
    prepared = prepare(hook, "ingest", ws.Ports.build(output="raw"))
    assert prepared.claim == ws.claim_name("etl", RUN, 1) and len(hook.pvcs) == 1


def test_a_contract_violation_creates_and_writes_nothing() -> None:
    hook = FakeHook()
    prepare(hook, "ingest", ws.Ports.build(output="raw", produces=ORDERS))
    succeed(hook, "ingest", "raw")
    before = {k: dict(v) for k, v in hook.config_maps.items()}
    hook.calls.clear()
    accepts = {"raw": Contract("orders", "1.0", {"amount": "int"})}
    with pytest.raises(InputCheckError, match="field 'amount': expected int, found str"):
        prepare(
            hook, "transform", ws.Ports.build(inputs=["raw"], accepts=accepts), declared={"ingest": ORDERS}
        )
    assert {v for v, _ in hook.calls} == {"get_config_map"}  # read the ledger, nothing else
    assert hook.config_maps == before


def test_after_deletion_a_new_generation_is_used_and_old_inputs_fail_fast() -> None:
    hook = FakeHook()
    prepare(hook, "ingest", ws.Ports.build(output="raw"))
    succeed(hook, "ingest", "raw")
    g1 = ws.claim_name("etl", RUN, 1)
    assert storage.delete_workspace(hook, NS, ident("cleanup"), WS, LOG) == g1
    assert storage.delete_workspace(hook, NS, ident("cleanup"), WS, LOG) is None  # once
    # a consumer (cleared after the run succeeded) fails before creating anything
    hook.calls.clear()
    with pytest.raises(InputCheckError, match="was deleted at"):
        prepare(hook, "transform", ws.Ports.build(inputs=["raw"]))
    assert hook.verbs("create_pvc") == []
    # the producer re-runs: generation 2, never the deleted name
    again = prepare(hook, "ingest", ws.Ports.build(output="raw"))
    assert again.claim == ws.claim_name("etl", RUN, 2) and g1 not in hook.pvcs
    succeed(hook, "ingest", "raw", digest="sha256:d2")
    assert (
        prepare(hook, "transform", ws.Ports.build(inputs=["raw"])).inputs["raw"].manifest_digest
        == "sha256:d2"
    )


def test_a_claim_deleted_behind_our_back_is_never_recreated_under_its_name() -> None:
    hook = FakeHook()
    prepare(hook, "ingest", ws.Ports.build(output="raw"))
    succeed(hook, "ingest", "raw")
    hook.pvcs.clear()  # kubectl delete pvc
    with pytest.raises(InputCheckError, match="which no longer exists"):
        prepare(hook, "transform", ws.Ports.build(inputs=["raw"]))
    assert ws.claim_name("etl", RUN, 2) in hook.pvcs and ws.claim_name("etl", RUN, 1) not in hook.pvcs


def test_existing_claims_are_checked_and_never_deleted() -> None:
    hook = FakeHook()
    mine = ws.Workspace(claim_name="shared")
    with pytest.raises(storage.WorkspaceError, match="does not exist"):
        prepare(hook, "ingest", ws.Ports.build(output="raw"), workspace=mine)
    hook.pvcs["shared"] = {"metadata": {"name": "shared", "uid": "s1"}}
    prepared = prepare(hook, "ingest", ws.Ports.build(output="raw"), workspace=mine)
    assert prepared.claim == "shared" and hook.verbs("create_pvc") == []
    assert storage.delete_workspace(hook, NS, ident("cleanup"), mine, LOG) is None
    assert "shared" in hook.pvcs


def test_a_claim_of_another_run_is_refused() -> None:
    hook = FakeHook()
    name = ws.claim_name("etl", RUN, 1)
    hook.pvcs[name] = ws.claim_manifest(WS, dag_id="etl", run_id="someone-else", generation=1)
    with pytest.raises(storage.WorkspaceError, match="was not created for DAG 'etl'"):
        prepare(hook, "ingest", ws.Ports.build(output="raw"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-01", "2026-01-01T00:00:00+00:00"),
        ("2026-01-01 00:00:00+00:00", "2026-01-01T00:00:00+00:00"),
        ("2026-01-01T02:00:00+02:00", "2026-01-01T00:00:00+00:00"),
        ("2026-01-01T00:00:00Z", "2026-01-01T00:00:00+00:00"),
    ],
)
def test_normalize_date(value: str, expected: str) -> None:
    assert output_lookup.normalize_date(value) == expected


# --------------------------------------------------------------------------- sensor, cleanup


def test_output_sensor_waits_for_a_succeeded_stage_with_that_output() -> None:
    hook = FakeHook()
    sensor = KbatchOutputSensor(
        task_id="wait", external_dag_id="etl", run_id=RUN, output_name="raw", namespace=NS
    )
    sensor.__dict__["hook"] = hook
    assert sensor.poke({}).is_done is False  # no ledger yet
    prepare(hook, "ingest", ws.Ports.build(output="raw"))
    assert sensor.poke({}).is_done is False  # running, nothing recorded
    succeed(hook, "ingest", "raw")
    done = sensor.poke({})
    assert done.is_done and done.xcom_value["stage"] == "ingest"
    assert done.xcom_value["manifest_digest"] == "sha256:d1" and done.xcom_value["run_id"] == RUN
    data = hook.config_maps[rules.ledger_name("etl", RUN)]
    assert find_output(data, output=None, stage="ingest") is not None
    assert find_output(data, output="other", stage="ingest") is None


def test_output_sensor_finds_the_run_by_logical_date_and_names_the_producer() -> None:
    hook = FakeHook()
    prepare(hook, "ingest", ws.Ports.build(output="raw"))
    succeed(hook, "ingest", "raw")
    for date, found in (("2026-01-01", True), ("2026-01-01T01:00:00+01:00", True), ("2026-01-02", False)):
        sensor = KbatchOutputSensor(
            task_id="wait", external_dag_id="etl", logical_date=date, output_name="raw", namespace=NS
        )
        sensor.__dict__["hook"] = hook
        poked = sensor.poke({})
        assert poked.is_done is found, date
        if found:
            assert poked.xcom_value["run_id"] == RUN and poked.xcom_value["stage"] == "ingest"
    assert hook.calls[-1] == ("list_config_maps", rules.ledger_selector("etl"))


def test_output_query_matches_only_the_ledger_of_its_run() -> None:
    hook = FakeHook()
    prepare(hook, "ingest", ws.Ports.build(output="raw"))
    succeed(hook, "ingest", "raw")
    ledger = {
        "metadata": {"name": rules.ledger_name("etl", RUN)},
        "data": hook.config_maps[rules.ledger_name("etl", RUN)],
    }
    mine = output_lookup.OutputQuery(dag_id="etl", run_id=RUN, output="raw")
    assert mine.match(ledger)["manifest_digest"] == "sha256:d1"
    assert output_lookup.OutputQuery(dag_id="etl", run_id="other-run", output="raw").match(ledger) is None
    assert (
        output_lookup.OutputQuery(dag_id="etl", run_id=RUN, output="raw", stage="transform").match(ledger)
        is None
    )
    assert output_lookup.OutputQuery(dag_id="etl", run_id=RUN, stage="ingest").match(ledger)["name"] == "raw"
    assert mine.selector() == rules.ledger_selector("etl", RUN)
    assert "output 'raw' of DAG 'etl' (run " in mine.describe()


@pytest.mark.parametrize(
    ("query", "complaint"),
    [
        (
            output_lookup.OutputQuery(dag_id="etl", run_id=" ", output="raw"),
            "run_id is empty (after templating)",
        ),
        (
            output_lookup.OutputQuery(dag_id="etl", logical_date="yesterday", output="raw"),
            "logical_date 'yesterday'",
        ),
        (output_lookup.OutputQuery(dag_id="", run_id=RUN, output="raw"), "external_dag_id is empty"),
        (output_lookup.OutputQuery(dag_id="etl", run_id=RUN), "output_name, stage, or both"),
        (output_lookup.OutputQuery(dag_id="etl", output="raw"), "exactly one of run_id or logical_date"),
    ],
)
def test_output_query_problems_name_the_argument(query: output_lookup.OutputQuery, complaint: str) -> None:
    assert any(complaint in p for p in query.problems()), query.problems()


def test_output_sensor_fails_without_retry_on_an_empty_rendered_run_id() -> None:
    sensor = KbatchOutputSensor(task_id="w", external_dag_id="etl", run_id="", output_name="raw")
    sensor.__dict__["hook"] = FakeHook()
    with pytest.raises(AirflowFailException, match="KbatchOutputSensor w: run_id is empty"):
        sensor.poke({})


def test_deferrable_output_sensor_returns_at_once_when_recorded_else_defers_to_the_watch() -> None:
    hook = FakeHook()
    sensor = KbatchOutputSensor(
        task_id="wait",
        external_dag_id="etl",
        run_id=RUN,
        output_name="raw",
        namespace=NS,
        deferrable=True,
        timeout=600,
    )
    sensor.__dict__["hook"] = hook
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, KbatchOutputTrigger)
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout == datetime.timedelta(seconds=600)
    assert trigger.serialize()[1] == {
        "external_dag_id": "etl",
        "namespace": NS,
        "run_id": RUN,
        "logical_date": None,
        "output_name": "raw",
        "stage": None,
        "conn_id": "kubernetes_default",
        "cluster_context": None,
        "config_file": None,
        "not_before": trigger.not_before,
    }
    prepare(hook, "ingest", ws.Ports.build(output="raw"))
    succeed(hook, "ingest", "raw")
    assert sensor.execute({})["manifest_digest"] == "sha256:d1"
    assert sensor.execute_complete({}, {"status": "success", "output": {"name": "raw"}}) == {"name": "raw"}
    with pytest.raises(AirflowException, match="watching the ledgers failed: Forbidden"):
        sensor.execute_complete({}, {"status": "error", "error": "Forbidden"})


class FakeAsyncHook:
    """Replays ConfigMap watch events; records the selector it was asked for."""

    def __init__(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        self.events = events
        self.selectors: list[str] = []
        self.closed = False

    async def watch_config_maps(self, namespace: str, label_selector: str) -> Any:
        self.selectors.append(label_selector)
        try:
            for event in self.events:
                yield event
            raise ConnectionError("the API server went away")
        finally:
            self.closed = True


async def test_output_trigger_fires_on_the_first_ledger_write_that_records_the_output() -> None:
    hook = FakeHook()
    prepare(hook, "ingest", ws.Ports.build(output="raw"))
    name = rules.ledger_name("etl", RUN)
    running = {"metadata": {"name": name}, "data": dict(hook.config_maps[name])}
    succeed(hook, "ingest", "raw")
    done = {"metadata": {"name": name}, "data": dict(hook.config_maps[name])}
    other_run = {
        "metadata": {"name": rules.ledger_name("etl", "other")},
        "data": dict(hook.config_maps[name]),
    }
    fake = FakeAsyncHook([("ADDED", running), ("ADDED", other_run), ("DELETED", done), ("MODIFIED", done)])
    trigger = KbatchOutputTrigger(external_dag_id="etl", namespace=NS, run_id=RUN, output_name="raw")
    trigger.async_hook = lambda: fake  # type: ignore[method-assign]
    events = [event async for event in trigger.run()]
    assert len(events) == 1
    assert events[0].payload["status"] == "success"
    assert events[0].payload["output"]["manifest_digest"] == "sha256:d1"
    assert fake.selectors == [rules.ledger_selector("etl", RUN)] and fake.closed


async def test_output_trigger_reports_a_watch_failure_as_an_error_event() -> None:
    fake = FakeAsyncHook([])
    trigger = KbatchOutputTrigger(
        external_dag_id="etl", namespace=NS, run_id=RUN, output_name="raw", future_option=1
    )
    trigger.async_hook = lambda: fake  # type: ignore[method-assign]
    events = [event async for event in trigger.run()]
    assert [e.payload for e in events] == [
        {"status": "error", "error": "ConnectionError: the API server went away"}
    ]


def test_output_sensor_arguments() -> None:
    with pytest.raises(ValueError, match="exactly one of run_id or logical_date"):
        KbatchOutputSensor(task_id="w", external_dag_id="etl", output_name="raw")
    with pytest.raises(ValueError, match="output_name, stage, or both"):
        KbatchOutputSensor(task_id="w", external_dag_id="etl", run_id=RUN)


@pytest.mark.parametrize(
    ("states", "unfinished"),
    [
        ({RUN: {"a": "success", "b": "skipped", "cleanup": "running"}}, []),
        ({RUN: {"a": "success", "b": "failed", "cleanup": "running"}}, ["b (failed)"]),
        ({RUN: {"a": "upstream_failed", "c": None}}, ["a (upstream_failed)", "c (None)"]),
        ({"a": "success", "cleanup": "running"}, []),
    ],
)
def test_cleanup_keeps_the_claim_unless_every_other_task_succeeded(
    states: Any, unfinished: list[str]
) -> None:
    assert unfinished_tasks(states, RUN, "cleanup") == unfinished


# --------------------------------------------------------------------------- the ledger: identity and size


def test_the_workspace_record_write_creates_the_ledger_with_its_identity() -> None:
    hook = FakeHook()
    prepare(hook, "ingest", ws.Ports.build(output="raw"))
    assert hook.annotations[rules.ledger_name("etl", RUN)] == rules.ledger_annotations("etl", RUN)


def test_a_ledger_of_another_run_under_our_name_fails_the_stage_before_any_write() -> None:
    hook = FakeHook()
    name = rules.ledger_name("etl", RUN)
    hook.config_maps[name] = {"stage.x": "{}"}
    hook.annotations[name] = rules.ledger_annotations("etl", "scheduled__1999-01-01")
    with pytest.raises(
        storage.WorkspaceError, match="belongs to DAG 'etl' run 'scheduled__1999-01-01'"
    ) as err:
        prepare(hook, "ingest", ws.Ports.build(output="raw", inputs=["x"]))
    assert err.value.final is True
    with pytest.raises(storage.WorkspaceError, match="belongs to DAG 'etl' run 'scheduled__1999-01-01'"):
        prepare(hook, "ingest", ws.Ports.build(output="raw"))  # no input to check: the read refuses
    assert hook.config_maps[name] == {"stage.x": "{}"} and hook.verbs("create_pvc") == []


def test_workspace_record_writes_keep_a_full_ledger_under_its_budget() -> None:
    """The workspace record is written through the same budget as the stage records."""
    hook = FakeHook()
    name = rules.ledger_name("etl", RUN)
    big = {i: {"i": i, "blob": "x" * 440} for i in range(rules.MAX_RESULTS)}
    data: dict[str, str] = {}
    for s in range(17):  # ~17 x 52 KiB: just under the budget
        key = rules.stage_key(f"s{s}")
        at = f"2026-01-01T00:{s:02d}:00Z"
        data = rules.record_attempt_started(data, key, try_number=1, job=f"j{s}", uid="u", spec_hash="h",
                                            index_map="0-99", at=at)  # fmt: skip
        data = rules.record_attempt_finished(data, key, job=f"j{s}", uid="u", succeeded=True, at=at,
                                             completed="0-99", results=big)  # fmt: skip
    data = {**data, "pad": "p" * (rules.LEDGER_BUDGET_BYTES - rules.ledger_size(data) - 100)}
    hook.config_maps[name] = data
    prepare(hook, "ingest", ws.Ports.build(output="raw"))  # the workspace record does not fit as is
    written = hook.config_maps[name]
    assert rules.ledger_size(written) <= rules.LEDGER_BUDGET_BYTES
    assert ws.read_workspace(written) is not None and written["pad"] == data["pad"]
    assert rules.read_stage(written, rules.stage_key("s0")).results == {}  # type: ignore[union-attr]  # oldest
    assert written[rules.stage_key("s16")] == data[rules.stage_key("s16")]  # newest: intact
