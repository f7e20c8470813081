from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from airflow_provider_kbatch.errors import (
    AlreadyExists,
    Conflict,
    JobAlreadyExists,
    NotFound,
    PodLogNotReady,
)
from airflow_provider_kbatch.hooks import calls
from airflow_provider_kbatch.hooks.calls import MERGE_PATCH, ApiCall, Sleep
from airflow_provider_kbatch.hooks.retry import RetryPolicy
from tests.unit.hooks.fakes import FakeApi, Sleeps, fail, job, to_dict

NO_JITTER = RetryPolicy(max_attempts=100, base_delay=0.01, max_delay=1.0, jitter=0.0)


def run(proc: calls.Proc[Any], api: FakeApi, sleeps: Sleeps | None = None) -> Any:
    return calls.run(proc, api, sleeps or Sleeps())


def ledger_add(key: str, value: str) -> Callable[[dict[str, str]], dict[str, str]]:
    def mutate(data: dict[str, str]) -> dict[str, str]:
        data[key] = value
        return data

    return mutate


# --- single requests ---------------------------------------------------------------------------


def test_create_job_posts_the_manifest_to_the_namespace() -> None:
    api = FakeApi()
    manifest = job("kb-a-g1", "")
    created = run(calls.create_job("ns", manifest), api)
    assert created["metadata"]["uid"] == "uid-1"
    (call,) = api.calls
    assert (call.api, call.method, call.verb, call.namespace) == (
        "BatchV1Api",
        "create_namespaced_job",
        "POST",
        "ns",
    )
    assert call.body == manifest


def test_create_job_conflict_reads_the_existing_job_back() -> None:
    api = FakeApi()
    first = api.put("Job", "ns", job("kb-a-g1", ""))
    with pytest.raises(JobAlreadyExists) as raised:
        run(calls.create_job("ns", job("kb-a-g1", "")), api)
    assert raised.value.job["metadata"]["uid"] == first["metadata"]["uid"]
    assert [(c.verb, c.method, c.kwargs.get("name")) for c in api.calls] == [
        ("POST", "create_namespaced_job", None),
        ("GET", "read_namespaced_job", "kb-a-g1"),
    ]


def test_get_returns_none_on_404() -> None:
    assert run(calls.get("Job", "ns", "missing"), FakeApi()) is None


def test_delete_job_is_foreground_and_tolerates_404() -> None:
    api = FakeApi()
    api.put("Job", "ns", job("kb-a-g1", ""))
    assert run(calls.delete("Job", "ns", "kb-a-g1", propagation="Foreground"), api) is True
    assert api.calls[0].verb == "DELETE"
    assert api.calls[0].kwargs == {"name": "kb-a-g1", "namespace": "ns", "propagation_policy": "Foreground"}
    assert run(calls.delete("Job", "ns", "kb-a-g1", propagation="Foreground"), api) is False


def test_set_suspend_sends_a_merge_patch() -> None:
    api = FakeApi()
    api.put("Job", "ns", job("kb-a-g1", ""))
    patched = run(calls.set_suspend("ns", "kb-a-g1", True), api)
    assert patched["spec"]["suspend"] is True
    (call,) = api.calls
    assert call.verb == "PATCH"
    assert call.kwargs == {
        "name": "kb-a-g1",
        "namespace": "ns",
        "body": {"spec": {"suspend": True}},
        "_content_type": MERGE_PATCH,
    }


def test_list_paginates_and_returns_the_list_resource_version() -> None:
    api = FakeApi()
    api.page_size = 2
    for i in range(5):
        api.put("Pod", "ns", to_dict(client.V1Pod(metadata=client.V1ObjectMeta(name=f"p{i}"))))
    items, rv = run(calls.list_with_version("Pod", "ns", label_selector="a=b", page_size=2), api)
    assert [p["metadata"]["name"] for p in items] == ["p0", "p1", "p2", "p3", "p4"]
    assert all(p["kind"] == "Pod" and p["apiVersion"] == "v1" for p in items)
    assert rv
    assert [c.kwargs.get("_continue") for c in api.calls] == [None, "2", "4"]
    assert all(c.kwargs["label_selector"] == "a=b" and c.kwargs["limit"] == 2 for c in api.calls)


def test_read_pod_log_400_means_not_ready() -> None:
    api = FakeApi()
    api.before.append(lambda call: (_ for _ in ()).throw(fail(400, "BadRequest", "container is waiting")))
    with pytest.raises(PodLogNotReady, match="container is waiting"):
        run(calls.read_pod_log("ns", "p0", container="main", tail_lines=20), api)
    assert api.calls[0].kwargs == {"name": "p0", "namespace": "ns", "container": "main", "tail_lines": 20}
    assert api.calls[0].decode == "text"


def test_replace_config_map_requires_a_resource_version() -> None:
    with pytest.raises(ValueError, match="resourceVersion"):
        run(calls.replace_config_map("ns", calls.config_map_body("cm", {})), FakeApi())


def test_watch_call() -> None:
    call = calls.watch_call("Job", "ns", "42", timeout_seconds=240, field_selector="metadata.name=j")
    assert call == ApiCall(
        "BatchV1Api",
        "list_namespaced_job",
        {
            "namespace": "ns",
            "field_selector": "metadata.name=j",
            "watch": True,
            "allow_watch_bookmarks": True,
            "resource_version": "42",
            "timeout_seconds": 240,
        },
        "raw",
    )


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ({"major": "1", "minor": "36"}, (1, 36)),
        ({"major": "1", "minor": "27+", "gitVersion": "v1.27.3-gke.100"}, (1, 27)),
        ({"major": "", "minor": "", "gitVersion": "v1.30.2"}, (1, 30)),
    ],
)
def test_server_version(code: dict[str, str], expected: tuple[int, int]) -> None:
    proc = calls.server_version()
    assert next(proc) == calls.VERSION_CALL
    with pytest.raises(StopIteration) as done:
        proc.send(code)
    assert done.value.value == expected


def test_line_splitter_keeps_partial_lines() -> None:
    splitter = calls.LineSplitter()
    assert splitter.feed(b'{"a": 1}\n{"b"') == ['{"a": 1}']
    assert splitter.feed(b": 2}\r\nlast") == ['{"b": 2}']
    assert splitter.flush() == ["last"]
    assert calls.parse_watch_line("  ") is None
    assert calls.parse_watch_line(json.dumps({"type": "ADDED", "object": {}})) == {
        "type": "ADDED",
        "object": {},
    }


# --- the run ledger's compare-and-swap -----------------------------------------------------------


def test_cas_creates_the_config_map_when_missing() -> None:
    api = FakeApi()
    data = run(
        calls.update_config_map_cas(
            "ns", "ledger", ledger_add("stage.a", "{}"), labels={"kbatch.io/ledger": "true"}
        ),
        api,
    )
    assert data == {"stage.a": "{}"}
    stored = api.objects[("ConfigMap", "ns", "ledger")]
    assert stored["metadata"]["labels"] == {"kbatch.io/ledger": "true"}
    assert [c.verb for c in api.calls] == ["GET", "POST"]


def test_cas_replace_conflict_rereads_and_keeps_both_writers() -> None:
    api = FakeApi()
    api.put("ConfigMap", "ns", calls.config_map_body("ledger", {"stage.a": "1"}))
    sleeps = Sleeps()

    def other_writer_first(call: ApiCall) -> None:
        # Another writer wins the race once: it changes the map just before our replace lands.
        if call.verb == "PUT":
            api.before.remove(other_writer_first)
            current = api.objects[("ConfigMap", "ns", "ledger")]
            api.put("ConfigMap", "ns", {**current, "data": {**current["data"], "stage.b": "2"}})

    api.before.append(other_writer_first)
    data = run(
        calls.update_config_map_cas("ns", "ledger", ledger_add("stage.c", "3"), backoff=NO_JITTER),
        api,
        sleeps,
    )
    assert data == {"stage.a": "1", "stage.b": "2", "stage.c": "3"}
    assert api.objects[("ConfigMap", "ns", "ledger")]["data"] == data
    assert [c.verb for c in api.calls] == ["GET", "PUT", "GET", "PUT"]
    # the replace carried the resourceVersion that was read
    assert api.calls[1].body["metadata"]["resourceVersion"] == "100"
    assert sleeps.delays == [0.01]


def test_cas_create_race_rereads() -> None:
    api = FakeApi()

    def other_creates_first(call: ApiCall) -> None:
        if call.verb == "POST":
            api.before.remove(other_creates_first)
            api.put("ConfigMap", "ns", calls.config_map_body("ledger", {"stage.b": "2"}))

    api.before.append(other_creates_first)
    data = run(
        calls.update_config_map_cas("ns", "ledger", ledger_add("stage.a", "1"), backoff=NO_JITTER), api
    )
    assert data == {"stage.a": "1", "stage.b": "2"}
    assert [c.verb for c in api.calls] == ["GET", "POST", "GET", "PUT"]


def test_cas_mutate_gets_a_fresh_copy_and_no_write_when_unchanged() -> None:
    api = FakeApi()
    api.put("ConfigMap", "ns", calls.config_map_body("ledger", {"k": "v"}))
    seen: list[dict[str, str]] = []

    def mutate(data: dict[str, str]) -> dict[str, str]:
        seen.append(data)
        return data

    assert run(calls.update_config_map_cas("ns", "ledger", mutate), api) == {"k": "v"}
    assert [c.verb for c in api.calls] == ["GET"]
    seen[0]["k"] = "changed"
    assert api.objects[("ConfigMap", "ns", "ledger")]["data"] == {"k": "v"}


def test_cas_gives_up_with_conflict() -> None:
    api = FakeApi()
    api.put("ConfigMap", "ns", calls.config_map_body("ledger", {}))

    def always_lose(call: ApiCall) -> None:
        if call.verb == "PUT":
            api.put("ConfigMap", "ns", api.objects[("ConfigMap", "ns", "ledger")])

    api.before.append(always_lose)
    with pytest.raises(Conflict, match="gave up after 3"):
        run(
            calls.update_config_map_cas(
                "ns", "ledger", ledger_add("a", "1"), max_attempts=3, backoff=NO_JITTER
            ),
            api,
        )


def test_driver_throws_errors_into_the_procedure() -> None:
    def proc() -> calls.Proc[str]:
        try:
            yield calls.read_call("Job", "ns", "x")
        except NotFound:
            yield Sleep(2.0)
            return "recovered"
        return "unexpected"

    sleeps = Sleeps()
    assert calls.run(proc(), FakeApi(), sleeps) == "recovered"
    assert sleeps.delays == [2.0]


def test_driver_propagates_uncaught_errors() -> None:
    api = FakeApi()
    api.put("ConfigMap", "ns", calls.config_map_body("cm", {}))
    with pytest.raises(AlreadyExists):
        run(calls.create("ConfigMap", "ns", calls.config_map_body("cm", {})), api)


async def test_async_driver_runs_the_same_procedure() -> None:
    api = FakeApi()
    sleeps = Sleeps()

    async def execute(call: ApiCall) -> Any:
        return api(call)

    data = await calls.arun(
        calls.update_config_map_cas("ns", "l", ledger_add("a", "1")), execute, sleeps.asleep
    )
    assert data == {"a": "1"}
