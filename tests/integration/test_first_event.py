"""The first event of a new Asset goes alone, decided by the real API server
(``engine.first_event``): of stages ending at one moment, exactly one creates the claim
ConfigMap and ends; the others end only once the Asset exists.

What "the Asset exists" means is Airflow's (its task-success update inserts it); here it is an
event the first run sets a second after it went on, as its task's success would.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import pytest

from airflow_provider_kbatch.engine import first_event
from airflow_provider_kbatch.hooks.kbatch import KbatchHook
from tests.conftest import ClusterHandle

pytestmark = pytest.mark.integration
LOG = logging.getLogger(__name__)
URI = "kbatch://{ns}/daily/squares"
RUNS = 5
COMMIT_DELAY = 1.0


def race(namespace: str, runs: int) -> tuple[list[tuple[str, float]], float]:
    """``runs`` threads take their turn at once; the one that goes first "creates the Asset"
    COMMIT_DELAY s later. Each thread's turn and when it ended; when the Asset came."""
    created = threading.Event()
    created_at: list[float] = []
    start = threading.Barrier(runs)
    turns: list[tuple[str, float]] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        hook = KbatchHook()  # a hook (and a client) per run, as per task process
        start.wait()
        got = first_event.take_turn(
            hook,
            namespace,
            dag_id="daily",
            output="squares",
            uri=URI.format(ns=namespace),
            holder=f"run-{i}",
            known=created.is_set,
            log=LOG,
            poll=0.1,
        )
        ended = time.monotonic()
        if got == "first":

            def commit() -> None:
                created_at.append(time.monotonic())
                created.set()

            threading.Timer(COMMIT_DELAY, commit).start()
        with lock:
            turns.append((got, ended))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(runs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    assert created.wait(10), "no run went first"
    return turns, created_at[0]


def claim(namespace: str) -> dict[str, Any]:
    cm = KbatchHook().get_config_map(namespace, first_event.claim_name("daily", "squares"))
    assert cm is not None
    return dict(json.loads(cm["data"]["claim"]))


def test_of_runs_ending_at_once_one_goes_first_and_the_others_wait_for_the_asset(
    devcluster: ClusterHandle,
) -> None:
    namespace = devcluster.namespace("first-event")
    turns, asset_at = race(namespace, RUNS)
    assert sorted(t for t, _ in turns) == ["first"] + ["waited"] * (RUNS - 1), turns
    (first_ended,) = [at for t, at in turns if t == "first"]
    for got, ended in turns:
        if got == "waited":  # never before the Asset: their events find it
            assert ended >= asset_at, (ended, asset_at)
            assert ended - asset_at < 1.0, "a waiter noticed the Asset late"
    assert first_ended < asset_at
    holder = claim(namespace)
    assert holder["uri"] == URI.format(ns=namespace) and holder["holder"].startswith("run-")

    # later runs find the Asset and make no request at all
    hook = KbatchHook()
    assert first_event.take_turn(hook, namespace, dag_id="daily", output="squares", uri="u", holder="later",
                                 known=lambda: True, log=LOG) == "known"  # fmt: skip


def test_a_stale_claim_is_taken_over_by_exactly_one_run(devcluster: ClusterHandle) -> None:
    namespace = devcluster.namespace("first-event")
    name = first_event.claim_name("daily", "squares")
    # a claim left by a run that died before its end, two windows ago
    stale_at = time.time() - 2 * first_event.WINDOW_SECONDS
    KbatchHook().create_config_map(namespace, first_event._claim(name, "daily", URI, "dead-run", stale_at))
    turns, _ = race(namespace, 3)
    assert sorted(t for t, _ in turns) == ["first", "waited", "waited"], turns
    taken = claim(namespace)
    assert taken["holder"] != "dead-run" and taken["at"] > stale_at
