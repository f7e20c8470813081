"""KbatchJobTrigger.serialize() is a stored contract: deferred tasks survive an upgrade."""

from __future__ import annotations

import logging

from airflow_provider_kbatch.triggers.job import KbatchJobTrigger

PINNED = (
    "airflow_provider_kbatch.triggers.job.KbatchJobTrigger",
    {
        "job_name": "kb-etl-ingest-0123456789-g1",
        "namespace": "batch",
        "conn_id": "kubernetes_default",
        "job_uid": "u-1",
        "index_map": "0-7",
        "wait": {
            "progress_interval": 5.0,
            "stream_logs": True,
            "max_log_streams": 16,
            "process_log_streams": 64,
            "queue_timeout": None,
            "log_drain_seconds": 5.0,
        },
        "on_kill_action": "delete",
        "cluster_context": None,
        "config_file": None,
        "not_before": None,
        "traceparent": None,
        "end_task": None,
    },
)


def test_serialize_is_pinned():
    trigger = KbatchJobTrigger(
        job_name="kb-etl-ingest-0123456789-g1",
        namespace="batch",
        job_uid="u-1",
        index_map="0-7",
        wait={"progress_interval": 5.0},
    )
    assert trigger.serialize() == PINNED


def test_round_trip_and_old_or_unknown_kwargs_accepted():
    _path, kwargs = PINNED
    again = KbatchJobTrigger(**kwargs)
    assert again.serialize() == PINNED
    # an older serialization without the newer keys, and a newer one with keys we do not know
    old = KbatchJobTrigger(job_name="j", namespace="n", some_future_option=1)
    assert old.serialize()[1]["on_kill_action"] == "delete"
    assert old.serialize()[1]["wait"]["stream_logs"] is True


async def test_an_early_event_is_held_until_not_before(monkeypatch):
    import airflow_provider_kbatch.triggers.job as module

    slept = []

    async def fake_sleep(seconds):
        slept.append(seconds)

    monkeypatch.setattr(module.time, "time", lambda: 100.0)
    monkeypatch.setattr(module.asyncio, "sleep", fake_sleep)
    log = logging.getLogger("test")
    for not_before in (104.5, 99.0, None):
        await module.hold_until(not_before, log)
    assert slept == [4.5]
