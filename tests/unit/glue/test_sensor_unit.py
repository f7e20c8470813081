"""KbatchJobSensor and the lifecycle operators against a fake hook: what a poke decides for each
Job state, how the deferrable mode defers (and with what), and argument validation.

The fake hook answers from real ``kubernetes.client`` models turned into the API server's
camelCase JSON, as ``KbatchHook`` returns them.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from typing import Any

import pytest
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    TaskDeferred,
)
from kubernetes import client

from airflow_provider_kbatch.operators.job import (
    KbatchDeleteJobOperator,
    KbatchResumeJobOperator,
    KbatchSuspendJobOperator,
)
from airflow_provider_kbatch.sensors.job import KbatchJobSensor
from airflow_provider_kbatch.triggers.job import KbatchJobTrigger
from tests.unit.hooks.fakes import to_dict

NS = "batch"
FAIL_JOB_MESSAGE = (
    "Container main for pod batch/etl-0-abcde failed with exit code 42 matching FailJob rule at index 0"
)


def job(
    name: str,
    *conditions: tuple[str, str, str | None, str | None],
    labels: dict[str, str] | None = None,
    suspend: bool = False,
) -> dict[str, Any]:
    """A Job as the API server sends it; ``conditions`` are ``(type, status, reason, message)``."""
    model = client.V1Job(
        api_version="batch/v1",
        kind="Job",
        metadata=client.V1ObjectMeta(name=name, namespace=NS, uid=f"uid-{name}", labels=labels or {}),
        spec=client.V1JobSpec(
            completions=2,
            completion_mode="Indexed",
            suspend=suspend,
            template=client.V1PodTemplateSpec(
                spec=client.V1PodSpec(containers=[client.V1Container(name="main", image="x")])
            ),
        ),
        status=client.V1JobStatus(
            conditions=[
                client.V1JobCondition(type=t, status=s, reason=r, message=m) for t, s, r, m in conditions
            ]
            or None
        ),
    )
    return to_dict(model)


RUNNING = ()
COMPLETE = (
    ("SuccessCriteriaMet", "True", "CompletionsReached", None),
    ("Complete", "True", "CompletionsReached", None),
)
BACKOFF = (
    ("FailureTarget", "True", "BackoffLimitExceeded", None),
    ("Failed", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
)
FAIL_JOB = (
    ("FailureTarget", "True", "PodFailurePolicy", FAIL_JOB_MESSAGE),
    ("Failed", "True", "PodFailurePolicy", FAIL_JOB_MESSAGE),
)


class FakeHook:
    """The part of ``KbatchHook`` the sensor and the lifecycle operators use; records each call."""

    def __init__(self, *jobs: dict[str, Any]) -> None:
        self.jobs = {j["metadata"]["name"]: j for j in jobs}
        self.calls: list[tuple[Any, ...]] = []

    def get_job(self, namespace: str | None, name: str) -> dict[str, Any] | None:
        self.calls.append(("get_job", namespace, name))
        return self.jobs.get(name)

    def list_jobs(
        self, namespace: str | None, label_selector: str | None = None, *, field_selector: str | None = None
    ) -> list[dict[str, Any]]:
        self.calls.append(("list_jobs", namespace, label_selector))
        wanted = dict(part.split("=", 1) for part in (label_selector or "").split(",") if part)
        return [
            j
            for j in self.jobs.values()
            if all(j["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())
        ]

    def delete_job(self, namespace: str | None, name: str, propagation: str = "Foreground") -> bool:
        self.calls.append(("delete_job", namespace, name, propagation))
        return self.jobs.pop(name, None) is not None

    def set_suspend(self, namespace: str | None, name: str, suspend: bool) -> dict[str, Any]:
        self.calls.append(("set_suspend", namespace, name, suspend))
        return self.jobs[name]


def sensor(hook: FakeHook, **kwargs: Any) -> KbatchJobSensor:
    kwargs.setdefault("job_name", None if "label_selector" in kwargs else "etl")
    kwargs = {"poke_interval": 5, "timeout": 600, **kwargs}
    op = KbatchJobSensor(task_id="wait", namespace=NS, **kwargs)
    op.__dict__["hook"] = hook  # the cached_property, replaced
    return op


# --------------------------------------------------------------------------- poke: one Job


@pytest.mark.parametrize(
    ("conditions", "suspend", "expected"),
    [
        pytest.param(RUNNING, False, False, id="running"),
        pytest.param(COMPLETE, False, True, id="complete"),
        pytest.param(
            (("Complete", "False", None, None),), False, False, id="complete-condition-status-False"
        ),
        pytest.param(
            (("SuccessCriteriaMet", "True", "SuccessPolicy", None),),
            False,
            False,
            id="success-criteria-met-only",
        ),
        pytest.param(
            (("FailureTarget", "True", "BackoffLimitExceeded", None),), False, False, id="failure-target-only"
        ),
        pytest.param((("Suspended", "True", "JobSuspended", None),), True, False, id="suspended"),
        pytest.param(RUNNING, True, False, id="spec-suspend"),
    ],
)
def test_poke_by_name_per_job_state(conditions, suspend, expected):
    hook = FakeHook(job("etl", *conditions, suspend=suspend))
    assert sensor(hook).poke({}) is expected
    assert hook.calls == [("get_job", NS, "etl")]


def test_poke_missing_job_waits():
    assert sensor(FakeHook()).poke({}) is False


@pytest.mark.parametrize(
    ("conditions", "reason"),
    [
        pytest.param(BACKOFF, "BackoffLimitExceeded", id="backoff-limit"),
        pytest.param(
            (("Failed", "True", "DeadlineExceeded", "Job was active longer"),),
            "DeadlineExceeded",
            id="deadline",
        ),
        pytest.param(
            (("Failed", "True", "FailedIndexes", "Job has failed indexes"),),
            "FailedIndexes",
            id="failed-indexes",
        ),
    ],
)
def test_poke_failed_job_fails_retryably(conditions, reason):
    with pytest.raises(AirflowException, match=f"job {NS}/etl failed: {reason}") as info:
        sensor(FakeHook(job("etl", *conditions))).poke({})
    assert not isinstance(info.value, AirflowFailException), "Airflow retries apply to these failures"


def test_poke_fail_job_rule_fails_without_retry():
    with pytest.raises(AirflowFailException, match=r"PodFailurePolicy.*FailJob rule"):
        sensor(FakeHook(job("etl", *FAIL_JOB))).poke({})


# --------------------------------------------------------------------------- poke: label selector

SEL = "team=data,stage=ingest"
LABELS = {"team": "data", "stage": "ingest"}


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        pytest.param(COMPLETE, COMPLETE, True, id="both-complete"),
        pytest.param(COMPLETE, RUNNING, False, id="one-still-running"),
        pytest.param(RUNNING, RUNNING, False, id="both-running"),
    ],
)
def test_poke_by_selector_needs_every_job_complete(first, second, expected):
    other = job("unrelated", *BACKOFF, labels={"team": "data"})  # a failed Job the selector excludes
    hook = FakeHook(job("a", *first, labels=LABELS), job("b", *second, labels=LABELS), other)
    assert sensor(hook, label_selector=SEL).poke({}) is expected
    assert hook.calls == [("list_jobs", NS, SEL)]


def test_poke_by_selector_fails_when_one_failed_even_if_another_runs():
    hook = FakeHook(job("a", *RUNNING, labels=LABELS), job("b", *FAIL_JOB, labels=LABELS))
    with pytest.raises(AirflowFailException, match=f"job {NS}/b failed"):
        sensor(hook, label_selector=SEL).poke({})


def test_poke_by_selector_with_no_match_waits():
    assert sensor(FakeHook(job("a", *COMPLETE)), label_selector=SEL).poke({}) is False


def test_poke_mode_execute_pokes_until_complete():
    hook = FakeHook(job("etl", *RUNNING))
    op = sensor(hook, poke_interval=0, mode="poke")  # an explicit mode: not deferred by default
    pokes = []
    original = hook.get_job

    def get_job(namespace, name):
        pokes.append(name)
        if len(pokes) == 3:
            hook.jobs["etl"] = job("etl", *COMPLETE)
        return original(namespace, name)

    hook.get_job = get_job  # type: ignore[method-assign]
    op.execute({})
    assert len(pokes) == 3


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "cls", [KbatchJobSensor, KbatchDeleteJobOperator, KbatchSuspendJobOperator, KbatchResumeJobOperator]
)
@pytest.mark.parametrize(
    "kwargs",
    [pytest.param({}, id="neither"), pytest.param({"job_name": "a", "label_selector": "x=y"}, id="both")],
)
def test_exactly_one_of_job_name_or_label_selector(cls, kwargs):
    with pytest.raises(ValueError, match="exactly one of job_name or label_selector"):
        cls(task_id="t", **kwargs)


@pytest.mark.parametrize(
    "cls", [KbatchJobSensor, KbatchDeleteJobOperator, KbatchSuspendJobOperator, KbatchResumeJobOperator]
)
def test_templated_fields(cls):
    assert set(cls.template_fields) == {"job_name", "label_selector", "namespace"}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param({"job_name": ""}, "job_name", id="empty-name"),
        pytest.param({"job_name": "  "}, "job_name", id="blank-name"),
        pytest.param({"label_selector": ""}, "label_selector", id="empty-selector"),
    ],
)
def test_sensor_rejects_a_name_or_selector_that_rendered_empty(kwargs, field):
    """An empty selector lists every Job of the namespace: the sensor would wait on all of them."""
    hook = FakeHook(job("a", *RUNNING))
    with pytest.raises(AirflowFailException, match=f"{field} is empty"):
        sensor(hook, **kwargs).poke({})
    assert hook.calls == []


# --------------------------------------------------------------------------- deferrable


def deferred(call: Any) -> TaskDeferred:
    with pytest.raises(TaskDeferred) as info:
        call()
    return info.value


def test_deferrable_defers_to_a_watch_that_keeps_the_job_when_killed():
    hook = FakeHook(job("etl", *RUNNING))
    op = sensor(hook, deferrable=True)
    before = time.time()
    defer = deferred(lambda: op.execute({}))
    trigger = defer.trigger
    assert isinstance(trigger, KbatchJobTrigger)
    assert defer.method_name == "execute_complete"
    path, kwargs = trigger.serialize()
    assert path == "airflow_provider_kbatch.triggers.job.KbatchJobTrigger"
    assert kwargs["job_name"] == "etl" and kwargs["namespace"] == NS and kwargs["job_uid"] == "uid-etl"
    assert kwargs["on_kill_action"] == "keep", "the sensor does not own the Job: a kill must not delete it"
    assert kwargs["wait"]["stream_logs"] is False
    # no event in the first seconds after the deferral (apache/airflow#72716), as for the operator
    assert before + 6 <= kwargs["not_before"] <= time.time() + 6
    json.dumps(kwargs)  # trigger kwargs are stored as JSON
    assert before + 600 <= defer.kwargs["deadline"] <= time.time() + 600
    assert timedelta(seconds=599) < defer.timeout <= timedelta(seconds=600)
    assert KbatchJobTrigger(**kwargs).on_kill_action == "keep"  # what the triggerer rebuilds


def test_trigger_with_keep_does_not_touch_the_job_on_kill():
    """What the triggerer runs when a user kills the deferred sensor: no API call at all."""
    trigger = KbatchJobTrigger(job_name="etl", namespace=NS, on_kill_action="keep")

    def no_hook() -> Any:
        raise AssertionError("on_kill with 'keep' must not talk to the cluster")

    trigger.async_hook = no_hook  # type: ignore[method-assign]
    asyncio.run(trigger.on_kill())


@pytest.mark.parametrize(
    ("conditions", "error"),
    [pytest.param(COMPLETE, None, id="complete"), pytest.param(FAIL_JOB, AirflowFailException, id="failjob")],
)
def test_deferrable_decides_without_deferring_when_already_finished(conditions, error):
    op = sensor(FakeHook(job("etl", *conditions)), deferrable=True)
    if error is None:
        assert op.execute({}) is None
    else:
        with pytest.raises(error):
            op.execute({})


def test_deferrable_waits_for_a_job_that_does_not_exist_yet():
    hook = FakeHook()
    op = sensor(hook, deferrable=True)
    defer = deferred(lambda: op.execute({}))
    assert defer.method_name == "resume_wait"
    path, kwargs = defer.trigger.serialize()
    assert path == "airflow.providers.standard.triggers.temporal.DateTimeTrigger"
    # poke_interval (5 s), but never less than the event hold (6 s by default, apache/airflow#72716)
    assert 5 < (kwargs["moment"].timestamp() - time.time()) <= 6
    deadline = defer.kwargs["deadline"]
    # the timer fired, the Job exists now: the sensor watches it, with the same overall deadline
    hook.jobs["etl"] = job("etl", *RUNNING)
    again = deferred(lambda: op.resume_wait({}, event=None, deadline=deadline))
    assert isinstance(again.trigger, KbatchJobTrigger) and again.kwargs == {"deadline": deadline}


def test_deferrable_times_out_over_the_whole_wait():
    op = sensor(FakeHook(), deferrable=True)
    with pytest.raises(AirflowSensorTimeout):
        op.resume_wait({}, event=None, deadline=time.time() - 1)


def test_deferrable_selector_watches_each_unfinished_job_in_turn():
    hook = FakeHook(job("a", *RUNNING, labels=LABELS), job("b", *RUNNING, labels=LABELS))
    op = sensor(hook, label_selector=SEL, deferrable=True)
    first = deferred(lambda: op.execute({}))
    assert first.trigger.job_name == "a"
    hook.jobs["a"] = job("a", *COMPLETE, labels=LABELS)
    event = {"status": "finished", "succeeded": True, "namespace": NS, "name": "a", "retryable": True}
    second = deferred(lambda: op.execute_complete({}, event, **first.kwargs))
    assert second.trigger.job_name == "b" and second.kwargs == first.kwargs
    hook.jobs["b"] = job("b", *COMPLETE, labels=LABELS)
    assert op.execute_complete({}, {**event, "name": "b"}, **second.kwargs) is None


def test_execute_complete_by_name_succeeds_without_reading_the_job_again():
    hook = FakeHook()
    event = {"status": "finished", "succeeded": True, "namespace": NS, "name": "etl", "retryable": True}
    assert sensor(hook, deferrable=True).execute_complete({}, event) is None
    assert hook.calls == []


@pytest.mark.parametrize(
    ("event", "error"),
    [
        pytest.param(
            {"status": "finished", "succeeded": False, "retryable": False}, AirflowFailException, id="failjob"
        ),
        pytest.param(
            {"status": "finished", "succeeded": False, "retryable": True}, AirflowException, id="failed"
        ),
        pytest.param({"status": "deleted", "succeeded": False}, AirflowException, id="deleted"),
        pytest.param({"status": "error", "error": "boom"}, AirflowException, id="watch-error"),
    ],
)
def test_execute_complete_failures(event, error):
    with pytest.raises(error) as info:
        sensor(FakeHook(), deferrable=True).execute_complete({}, {"namespace": NS, "name": "etl", **event})
    if error is AirflowException:
        assert not isinstance(info.value, AirflowFailException)


# --------------------------------------------------------------------------- lifecycle operators


def lifecycle(cls: type, hook: FakeHook, **kwargs: Any) -> Any:
    op = cls(task_id="op", namespace=NS, **kwargs)
    op.__dict__["hook"] = hook
    return op


def test_delete_by_selector_deletes_each_match_in_the_foreground():
    hook = FakeHook(job("a", labels=LABELS), job("b", labels=LABELS), job("keep", labels={"team": "data"}))
    assert lifecycle(KbatchDeleteJobOperator, hook, label_selector=SEL).execute({}) == ["a", "b"]
    assert hook.calls == [
        ("list_jobs", NS, SEL),
        ("delete_job", NS, "a", "Foreground"),
        ("delete_job", NS, "b", "Foreground"),
    ]
    assert list(hook.jobs) == ["keep"]


def test_delete_by_name_with_propagation():
    hook = FakeHook(job("a"))
    assert lifecycle(KbatchDeleteJobOperator, hook, job_name="a", propagation="Background").execute({}) == [
        "a"
    ]
    assert hook.calls == [("delete_job", NS, "a", "Background")]


@pytest.mark.parametrize(
    ("cls", "value"), [(KbatchSuspendJobOperator, True), (KbatchResumeJobOperator, False)]
)
def test_suspend_and_resume_patch_spec_suspend(cls, value):
    hook = FakeHook(job("a", labels=LABELS), job("b", labels=LABELS))
    assert lifecycle(cls, hook, label_selector=SEL).execute({}) == ["a", "b"]
    assert hook.calls[1:] == [("set_suspend", NS, "a", value), ("set_suspend", NS, "b", value)]
    hook.calls.clear()
    assert lifecycle(cls, hook, job_name="a").execute({}) == ["a"]
    assert hook.calls == [("set_suspend", NS, "a", value)]


@pytest.mark.parametrize("cls", [KbatchDeleteJobOperator, KbatchSuspendJobOperator, KbatchResumeJobOperator])
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param({"job_name": ""}, "job_name", id="empty-name"),
        pytest.param({"label_selector": " "}, "label_selector", id="blank-selector"),
    ],
)
def test_lifecycle_refuses_a_name_or_selector_that_rendered_empty(cls, kwargs, field):
    """``job_name="{{ params.job }}"`` with an empty param used to list with an empty selector
    -- every Job in the namespace -- and delete (or suspend) all of them."""
    hook = FakeHook(job("a"), job("b"))
    with pytest.raises(AirflowFailException, match=f"{field} is empty"):
        lifecycle(cls, hook, **kwargs).execute({})
    assert hook.calls == [] and set(hook.jobs) == {"a", "b"}


@pytest.mark.parametrize("flag", ["soft_fail", "never_fail"])
@pytest.mark.parametrize("deferrable", [False, True])
def test_soft_fail_skips_on_a_failed_job_in_every_mode(flag, deferrable):
    """Poke mode gets it from BaseSensorOperator.execute; the deferrable first look must match."""
    op = sensor(FakeHook(job("etl", *FAIL_JOB)), deferrable=deferrable, **{flag: True})
    with pytest.raises(AirflowSkipException):
        op.execute({})


def test_event_hold_is_configurable(monkeypatch):
    monkeypatch.setenv("AIRFLOW__KBATCH__TRIGGER_EVENT_HOLD_SECONDS", "0")
    defer = deferred(lambda: sensor(FakeHook(job("etl", *RUNNING)), deferrable=True).execute({}))
    assert defer.trigger.serialize()[1]["not_before"] is None
    timer = deferred(lambda: sensor(FakeHook(), deferrable=True, poke_interval=2).execute({}))
    assert 0 < timer.trigger.serialize()[1]["moment"].timestamp() - time.time() <= 2
