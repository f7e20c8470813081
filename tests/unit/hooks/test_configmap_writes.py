"""The ConfigMap procedures the ledger and the results use: identity annotations and a check in
the CAS loop; ``put_config_map`` (create, or make the existing one hold the body) -- run against
the in-memory API of tests/unit/hooks/fakes.py, asserting on the requests sent."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_kbatch.errors import Conflict
from airflow_provider_kbatch.hooks import calls
from airflow_provider_kbatch.hooks.retry import RetryPolicy
from tests.unit.hooks.fakes import FakeApi, Sleeps, fail

NO_JITTER = RetryPolicy(max_attempts=100, base_delay=0.01, max_delay=1.0, jitter=0.0)
IDENTITY = {"kbatch.io/dag-id": "etl", "kbatch.io/run-id": "r1"}


def run(proc: calls.Proc[Any], api: FakeApi) -> Any:
    return calls.run(proc, api, Sleeps())


def add(data: dict[str, str]) -> dict[str, str]:
    return {**data, "stage.a": "1"}


def test_cas_creates_the_config_map_with_labels_and_annotations() -> None:
    api = FakeApi()
    run(calls.update_config_map_cas("ns", "ledger", add, labels={"l": "1"}, annotations=IDENTITY), api)
    (create,) = [c for c in api.calls if c.verb == "POST"]
    assert create.body["metadata"] == {"name": "ledger", "labels": {"l": "1"}, "annotations": IDENTITY}


def test_cas_adds_missing_annotations_to_an_existing_config_map_and_keeps_others() -> None:
    api = FakeApi()
    api.put(
        "ConfigMap", "ns", {"metadata": {"name": "ledger", "annotations": {"other": "x"}}, "data": {"k": "v"}}
    )
    run(calls.update_config_map_cas("ns", "ledger", lambda d: d, annotations=IDENTITY), api)
    (replace,) = [c for c in api.calls if c.verb == "PUT"]
    assert replace.body["metadata"]["annotations"] == {"other": "x", **IDENTITY}
    assert replace.body["data"] == {"k": "v"}


def test_cas_check_refuses_before_mutate_and_writes_nothing() -> None:
    api = FakeApi()
    api.put("ConfigMap", "ns", {"metadata": {"name": "ledger"}, "data": {}})
    seen: list[dict[str, Any]] = []

    def check(config_map: Any) -> None:
        seen.append(config_map)
        raise ValueError("not ours")

    def mutate(data: dict[str, str]) -> dict[str, str]:
        raise AssertionError("mutate must not run")

    with pytest.raises(ValueError, match="not ours"):
        run(calls.update_config_map_cas("ns", "ledger", mutate, check=check), api)
    assert seen[0]["metadata"]["name"] == "ledger"
    assert [c.verb for c in api.calls] == ["GET"]


def test_put_creates_then_replaces_only_what_differs() -> None:
    api = FakeApi()
    body = {
        "metadata": {
            "name": "res-0",
            "labels": {"kbatch.io/results": "true"},
            "annotations": {"a": "1"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "ledger", "uid": "u"}],
        },
        "data": {"0": "{}"},
    }
    created = run(calls.put_config_map("ns", body), api)
    assert created["metadata"]["ownerReferences"] == body["metadata"]["ownerReferences"]
    api.calls.clear()
    assert run(calls.put_config_map("ns", body), api)["data"] == {"0": "{}"}
    assert [c.verb for c in api.calls] == ["POST", "GET"]  # 409, read back: the same, no write
    api.calls.clear()
    grown = {**body, "data": {"0": "{}", "1": "{}"}}
    replaced = run(calls.put_config_map("ns", grown), api)
    assert [c.verb for c in api.calls] == ["POST", "GET", "PUT"]
    assert replaced["data"] == grown["data"] and replaced["metadata"]["resourceVersion"]
    assert api.calls[-1].body["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


def test_put_retries_a_lost_race_and_gives_up_with_conflict() -> None:
    api = FakeApi()
    body = {"metadata": {"name": "res-0"}, "data": {"0": "{}"}}
    run(calls.put_config_map("ns", {**body, "data": {}}), api)
    original = api.__call__
    conflicts = {"n": 0}

    def racing(call: calls.ApiCall) -> Any:
        if call.verb == "PUT" and conflicts["n"] < 2:
            conflicts["n"] += 1
            raise fail(409, "Conflict", "the object has been modified")
        return original(call)

    assert (
        calls.run(calls.put_config_map("ns", body, backoff=NO_JITTER), racing, Sleeps())["data"]
        == body["data"]
    )

    def always(call: calls.ApiCall) -> Any:
        if call.verb == "PUT":
            raise fail(409, "Conflict", "the object has been modified")
        return original(call)

    with pytest.raises(Conflict, match="gave up after 3"):
        calls.run(
            calls.put_config_map("ns", {**body, "data": {"x": "y"}}, max_attempts=3, backoff=NO_JITTER),
            always,
            Sleeps(),
        )
