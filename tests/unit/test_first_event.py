"""engine.first_event: the first event of a new Asset goes alone (fake hook, fake clock)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from airflow_provider_kbatch.engine import first_event
from airflow_provider_kbatch.errors import AlreadyExists, Conflict, KbatchApiError

LOG = logging.getLogger(__name__)
URI = "kbatch://batch/daily/squares"
NAME = first_event.claim_name("daily", "squares")


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


class Maps:
    """ConfigMaps of one namespace with the API server's create / replace rules."""

    def __init__(self) -> None:
        self.maps: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.calls: list[str] = []
        self.refuse: KbatchApiError | None = None

    def create_config_map(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("create")
        if self.refuse is not None:
            raise self.refuse
        name = body["metadata"]["name"]
        if name in self.maps:
            raise AlreadyExists(409, "AlreadyExists", name)
        return self._store(body)

    def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append("get")
        return self.maps.get(name)

    def replace_config_map(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("replace")
        current = self.maps[body["metadata"]["name"]]
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise Conflict(409, "Conflict", "changed")
        return self._store(body)

    def _store(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        stored = json.loads(json.dumps(body))
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.maps[stored["metadata"]["name"]] = stored
        return stored

    def claim(self) -> dict[str, Any]:
        return dict(json.loads(self.maps[NAME]["data"]["claim"]))


def turn(maps: Maps, clock: Clock, known: Any, holder: str = "run-b", **kw: Any) -> str:
    return first_event.take_turn(
        maps, "batch", dag_id="daily", output="squares", uri=URI, holder=holder, known=known,
        log=LOG, now=clock.now, sleep=clock.sleep, **kw,
    )  # fmt: skip


def test_an_existing_asset_costs_one_question_and_no_request() -> None:
    maps, clock = Maps(), Clock()
    asked: list[int] = []
    assert turn(maps, clock, lambda: asked.append(1) or True) == "known"
    assert asked == [1] and maps.calls == [] and clock.sleeps == []


def test_when_airflow_cannot_tell_nothing_is_coordinated() -> None:
    maps, clock = Maps(), Clock()
    assert turn(maps, clock, lambda: None) == "unknown"
    assert maps.calls == []


def test_the_first_run_claims_the_event_and_goes_on() -> None:
    maps, clock = Maps(), Clock()
    assert turn(maps, clock, lambda: False, holder="daily/r1/extract[-1]") == "first"
    assert maps.claim() == {"uri": URI, "holder": "daily/r1/extract[-1]", "at": 1000.0}
    labels = maps.maps[NAME]["metadata"]["labels"]
    assert labels[first_event.LABEL_ASSET_CLAIM] == "true"
    assert labels["app.kubernetes.io/managed-by"] == "airflow-provider-kbatch"
    assert clock.sleeps == []


def test_a_second_run_waits_until_the_asset_exists() -> None:
    maps, clock = Maps(), Clock()
    assert turn(maps, clock, lambda: False, holder="run-a") == "first"
    clock.t += 0.2  # the second stage ends 0.2 s later; the Asset comes 1.4 s after that
    created_at = clock.t + 1.4
    assert turn(maps, clock, lambda: clock.t >= created_at) == "waited"
    assert clock.sleeps == [0.5, 0.5, 0.5]
    assert maps.claim()["holder"] == "run-a"  # the waiter left the claim alone


def test_a_stale_claim_is_taken_over() -> None:
    maps, clock = Maps(), Clock()
    turn(maps, clock, lambda: False, holder="run-a")
    clock.t += first_event.WINDOW_SECONDS + 1  # run-a died before its end: no Asset
    assert turn(maps, clock, lambda: False) == "first"
    assert maps.claim() == {"uri": URI, "holder": "run-b", "at": clock.t}
    assert maps.calls[-3:] == ["create", "get", "replace"]


def test_a_retry_of_the_claiming_task_takes_its_own_claim_at_once() -> None:
    maps, clock = Maps(), Clock()
    turn(maps, clock, lambda: False, holder="run-a")  # try 1 claimed it, then failed before its end
    clock.t += 5
    assert turn(maps, clock, lambda: False, holder="run-a") == "first"  # try 2: no wait for itself
    assert clock.sleeps == [] and maps.claim()["at"] == clock.t


def test_a_wait_that_runs_out_takes_the_claim_over() -> None:
    maps, clock = Maps(), Clock()
    turn(maps, clock, lambda: False, holder="run-a")  # and run-a never ends
    assert turn(maps, clock, lambda: False, window=2.0) == "first"
    assert sum(clock.sleeps) == pytest.approx(2.0)
    assert maps.claim()["holder"] == "run-b"


def test_a_takeover_lost_to_another_run_waits_for_it() -> None:
    maps, clock = Maps(), Clock()
    turn(maps, clock, lambda: False, holder="run-a")
    clock.t += first_event.WINDOW_SECONDS + 1
    stale = maps.maps[NAME]
    real_get = maps.get_config_map

    def get_then_lose(namespace: str, name: str) -> dict[str, Any] | None:
        current = real_get(namespace, name)
        if current is stale:  # run-c takes the stale claim over between our read and replace
            maps.maps[NAME] = stale
            maps._store(first_event._claim(NAME, "daily", URI, "run-c", clock.t))
        return current

    maps.get_config_map = get_then_lose  # type: ignore[method-assign]
    appears = clock.t + 1.0
    assert turn(maps, clock, lambda: clock.t >= appears) == "waited"
    assert maps.claim()["holder"] == "run-c"


def test_claims_by_others_that_never_end_are_bounded() -> None:
    maps, clock = Maps(), Clock()

    def others_keep_claiming(*_: Any) -> None:
        maps.maps.pop(NAME, None)
        maps._store(first_event._claim(NAME, "daily", URI, "other", clock.t))

    others_keep_claiming()
    real_create = maps.create_config_map

    def create(namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        others_keep_claiming()  # a fresh claim by another run each round
        return real_create(namespace, body)

    maps.create_config_map = create  # type: ignore[method-assign]
    assert turn(maps, clock, lambda: False, window=1.0, rounds=3) == "timed out"
    assert sum(clock.sleeps) == pytest.approx(3.0)


def test_a_refused_claim_warns_and_ends_as_before(caplog: pytest.LogCaptureFixture) -> None:
    maps, clock = Maps(), Clock()
    maps.refuse = KbatchApiError(403, "Forbidden", 'configmaps is forbidden: User "x" cannot create')
    with caplog.at_level(logging.WARNING):
        assert turn(maps, clock, lambda: False) == "unknown"
    assert "could not claim its first event" in caplog.text and NAME in caplog.text


def test_the_claim_name_is_a_dns_label_of_the_dag_and_output() -> None:
    name = first_event.claim_name("Daily_ETL" * 10, "squares")
    assert name.startswith("kbatch-asset-daily-etl") and len(name) <= 63
    assert name != first_event.claim_name("Daily_ETL" * 10, "cubes")
