"""Ending a succeeded stage in the triggerer: the one decision (every reason named), what the
operator tells the trigger, and what the trigger does with it (a fake of the hooks only)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException
from airflow.triggers.base import TaskSuccessEvent

from airflow_provider_kbatch.engine.trigger_end import (
    REASONS,
    EndFacts,
    fallback_reasons,
    job_as_ran,
    manifest_digest,
)
from airflow_provider_kbatch.operators.job import KbatchJobOperator
from airflow_provider_kbatch.spec.errors import KbatchSpecError
from airflow_provider_kbatch.triggers import task_end
from airflow_provider_kbatch.triggers.job import KbatchJobTrigger
from tests.unit.glue.test_operator_unit import NS, FakeHook, _finished, context, deferred, operator

# --------------------------------------------------------------------------- the decision (pure)

#: reason -> the one fact that alone makes it apply
CAUSES: dict[str, dict[str, Any]] = {
    "disabled": {"enabled": False},
    "airflow_without_task_end_events": {"airflow_can_end_task": False},
    "outlets": {"outlets": True},
    "cache": {"cache": True},
    "tracing": {"tracing": True},
    "mapped_downstream": {"mapped_downstream": True},
    "task_hooks": {"task_hooks": True},
    "execute_complete_overridden": {"execute_complete_overridden": True},
    "custom_xcom_backend": {"custom_xcom_backend": True},
    "not_in_triggerer": {"in_triggerer": False},
    "not_succeeded": {"job_succeeded": False},
    "manifest_changed": {"manifest_changed": True},
}


def test_every_reason_is_documented_and_tested() -> None:
    assert set(CAUSES) == set(REASONS)
    assert all(REASONS.values())


@pytest.mark.parametrize("reason", list(CAUSES))
def test_each_fact_names_its_reason_alone(reason: str) -> None:
    assert fallback_reasons(EndFacts(**CAUSES[reason])) == (reason,)


def test_nothing_that_needs_a_worker_ends_in_the_triggerer() -> None:
    assert fallback_reasons(EndFacts()) == ()  # at the deferral: the outcome is not known yet
    assert fallback_reasons(EndFacts(job_succeeded=True)) == ()


def test_every_reason_at_once_in_the_documented_order() -> None:
    facts: dict[str, Any] = {}
    for cause in CAUSES.values():
        facts.update(cause)
    assert fallback_reasons(EndFacts(**facts)) == tuple(REASONS)


def test_the_manifest_digest_ignores_status_and_key_order() -> None:
    job = {"metadata": {"name": "j", "uid": "u", "resourceVersion": "1"}, "spec": {"a": 1, "b": 2}}
    later = {**job, "metadata": {**job["metadata"], "resourceVersion": "9"}, "status": {"succeeded": 1}}
    assert manifest_digest(job_as_ran(job)) == manifest_digest(job_as_ran(later))
    changed = {**job, "spec": {"b": 2, "a": 1, "suspend": True}}
    assert manifest_digest(job_as_ran(changed)) != manifest_digest(job_as_ran(job))


# --------------------------------------------------------------------------- the operator's facts


def _end_task(op: KbatchJobOperator) -> dict[str, Any] | None:
    return deferred(op).trigger.serialize()[1]["end_task"]


def test_a_plain_stage_asks_the_trigger_to_end_it() -> None:
    hook = FakeHook()
    op = operator(hook)
    spec = _end_task(op)
    assert spec is not None
    job = next(iter(hook.jobs.values()))
    assert spec["identity"] == {
        "dag_id": "etl",
        "task_id": "ingest",
        "run_id": context()["ti"].run_id,
        "map_index": -1,
        "try_number": 1,
    }
    assert spec["completions"] == 4 and spec["xcom_return"] is True and spec["multiple_outputs"] is False
    assert spec["manifest_digest"] == manifest_digest(job_as_ran(job))
    # the rendered field shows the Job as the API server returned it, the one the digest covers
    assert op.job_manifest == job_as_ran(job)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"end_in_triggerer": False}, "disabled"),
        ({"cache": True}, "cache"),
        ({"on_execute_callback": lambda context: None}, "task_hooks"),
    ],
)
def test_operator_arguments_that_keep_the_worker(kwargs: dict[str, Any], reason: str) -> None:
    op = operator(FakeHook(), **kwargs)
    assert reason in fallback_reasons(op.end_in_triggerer_facts())
    if reason != "cache":  # a cache hit needs more of the fake; the facts are what matter
        assert _end_task(op) is None


def test_outlets_keep_the_worker() -> None:
    from airflow.sdk import DAG, Asset

    with DAG("etl", schedule=None):
        op = operator(FakeHook(), outlets=[Asset("s3://bucket/out")])
    assert fallback_reasons(op.end_in_triggerer_facts()) == ("outlets",)


def test_a_subclass_overriding_execute_complete_keeps_the_worker() -> None:
    class Mine(KbatchJobOperator):
        def execute_complete(self, context: Any, event: dict[str, Any], **kwargs: Any) -> Any:
            return super().execute_complete(context, event, **kwargs)

    op = Mine(task_id="t", image="i", namespace=NS)
    assert fallback_reasons(op.end_in_triggerer_facts()) == ("execute_complete_overridden",)


def test_the_config_option_and_a_custom_xcom_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__KBATCH__END_IN_TRIGGERER", "False")
    assert fallback_reasons(operator(FakeHook()).end_in_triggerer_facts()) == ("disabled",)
    # the operator's argument wins over the option
    op = operator(FakeHook(), end_in_triggerer=True)
    assert fallback_reasons(op.end_in_triggerer_facts()) == ()
    monkeypatch.setenv("AIRFLOW__CORE__XCOM_BACKEND", "my.storage.ObjectXCom")
    assert fallback_reasons(op.end_in_triggerer_facts()) == ("custom_xcom_backend",)
    monkeypatch.setenv("AIRFLOW__CORE__XCOM_BACKEND", "airflow.sdk.execution_time.xcom.BaseXCom")
    assert fallback_reasons(op.end_in_triggerer_facts()) == ()


def test_a_bad_end_in_triggerer_fails_before_any_request_and_names_the_field() -> None:
    hook = FakeHook()
    op = operator(hook, end_in_triggerer="yes")
    with pytest.raises(AirflowFailException) as failure:
        op.execute(context())
    assert hook.calls == []
    assert isinstance(failure.value, KbatchSpecError) and failure.value.field == "end_in_triggerer"
    assert "must be True, False or None, got 'yes'" in str(failure.value)


# --------------------------------------------------------------------------- the trigger's side


class AsyncFake:
    """The AsyncKbatchHook methods ``end_task`` uses, over the sync fake's state."""

    def __init__(self, hook: FakeHook) -> None:
        self.sync = hook

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.sync.get_job(namespace, name)

    async def list_pods(self, namespace: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        return self.sync.list_pods(namespace, label_selector)


def _deferred_trigger(**kwargs: Any) -> tuple[FakeHook, KbatchJobTrigger, str]:
    hook = FakeHook()
    trigger = deferred(operator(hook, **kwargs)).trigger
    assert isinstance(trigger, KbatchJobTrigger)
    trigger.__dict__["hook"] = hook
    trigger.async_hook = lambda: AsyncFake(hook)  # type: ignore[method-assign]
    trigger.task_instance = SimpleNamespace(dag_id="etl", task_id="ingest")  # set by a triggerer
    return hook, trigger, trigger.job_name


def _event(name: str, *, succeeded: bool = True) -> dict[str, Any]:
    return {"status": "finished", "namespace": NS, "name": name, "uid": "uid-1", "succeeded": succeeded}


async def test_the_trigger_finishes_a_succeeded_stage_and_ends_the_task() -> None:
    hook, trigger, name = _deferred_trigger()
    _finished(hook, name, "Complete", "CompletionsReached", completedIndexes="0-3", succeeded=4)
    before = len(hook.calls)
    ended = await task_end.end_task(trigger, trigger.end_task or {}, _event(name))
    assert isinstance(ended, TaskSuccessEvent)
    xcoms = ended.xcoms or {}
    assert set(xcoms) == {"return_value", "job_manifest"}
    assert xcoms["return_value"]["completed_indexes"] == "0-3"
    assert xcoms["return_value"]["summary"] == "4/4 indexes completed, 0 failed"
    assert xcoms["job_manifest"] == job_as_ran(hook.jobs[name])
    # the ledger got the attempt's end, like execute_complete writes it
    assert "update_config_map_cas" in [c[0] for c in hook.calls[before:]]
    ledger = next(cm for cm in hook.config_maps.values() if "ingest" in "".join(cm["data"]))
    assert '"succeeded"' in "".join(ledger["data"].values())
    # the same result execute_complete returns
    assert xcoms["return_value"] == operator(hook).execute_complete(context(), _event(name))


async def test_xcom_flags_of_the_task_are_kept() -> None:
    hook, trigger, name = _deferred_trigger(multiple_outputs=True)
    _finished(hook, name, "Complete", "CompletionsReached", completedIndexes="0-3", succeeded=4)
    ended = await task_end.end_task(trigger, trigger.end_task or {}, _event(name))
    assert isinstance(ended, TaskSuccessEvent) and (ended.xcoms or {})["summary"].startswith("4/4")
    hook, trigger, name = _deferred_trigger(do_xcom_push=False)
    _finished(hook, name, "Complete", "CompletionsReached", completedIndexes="0-3", succeeded=4)
    ended = await task_end.end_task(trigger, trigger.end_task or {}, _event(name))
    assert isinstance(ended, TaskSuccessEvent) and set(ended.xcoms or {}) == {"job_manifest"}


async def test_a_failed_job_resumes_in_a_worker_and_writes_nothing() -> None:
    hook, trigger, name = _deferred_trigger(fail_on_exit_codes=[42])
    _finished(hook, name, "Failed", "PodFailurePolicy", failedIndexes="1")
    before = len(hook.calls)
    assert await task_end.end_task(trigger, trigger.end_task or {}, _event(name, succeeded=False)) is None
    assert "update_config_map_cas" not in [c[0] for c in hook.calls[before:]]


async def test_a_changed_or_replaced_job_resumes_in_a_worker() -> None:
    hook, trigger, name = _deferred_trigger()
    _finished(hook, name, "Complete", "CompletionsReached", completedIndexes="0-3", succeeded=4)
    hook.jobs[name]["spec"]["suspend"] = True  # changed since the deferral (e.g. Kueue admitted it)
    assert await task_end.end_task(trigger, trigger.end_task or {}, _event(name)) is None
    hook, trigger, name = _deferred_trigger()
    _finished(hook, name, "Complete", "CompletionsReached", completedIndexes="0-3", succeeded=4)
    assert await task_end.end_task(trigger, trigger.end_task or {}, {**_event(name), "uid": "other"}) is None


async def test_an_error_while_finishing_resumes_in_a_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    hook, trigger, name = _deferred_trigger()
    _finished(hook, name, "Complete", "CompletionsReached", completedIndexes="0-3", succeeded=4)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("api server gone")

    monkeypatch.setattr(task_end, "finish_stage", broken)
    assert await task_end.end_task(trigger, trigger.end_task or {}, _event(name)) is None
    monkeypatch.setattr(AsyncFake, "get_job", broken)  # also when reading the Job fails
    assert await task_end.end_task(trigger, trigger.end_task or {}, _event(name)) is None


async def test_without_task_end_events_the_trigger_does_not_end_the_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hook, trigger, name = _deferred_trigger()
    _finished(hook, name, "Complete", "CompletionsReached", completedIndexes="0-3", succeeded=4)
    monkeypatch.setattr(task_end, "TaskSuccessEvent", None)
    assert await task_end.end_task(trigger, trigger.end_task or {}, _event(name)) is None


async def test_outside_a_triggerer_the_trigger_does_not_end_the_task() -> None:
    """``airflow dags test`` runs the trigger inline, without a task instance, and would resume
    the task with the TaskSuccessEvent's payload (the string "success")."""
    hook, trigger, name = _deferred_trigger()
    _finished(hook, name, "Complete", "CompletionsReached", completedIndexes="0-3", succeeded=4)
    trigger.task_instance = None
    assert await task_end.end_task(trigger, trigger.end_task or {}, _event(name)) is None


def _traced(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A tracer provider with an in-memory exporter, as Airflow installs one with otel_on."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    return exporter


def _traced_context() -> dict[str, Any]:
    ctx = context()
    ctx["ti"].context_carrier = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    return ctx


async def test_a_traced_stage_ends_its_stage_span_in_the_triggerer(monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = _traced(monkeypatch)
    hook = FakeHook()
    trigger = deferred(operator(hook), _traced_context()).trigger
    spec = trigger.end_task or {}
    assert spec["trace"] and spec["trace"]["steps"].keys() >= {"validate", "submit"}
    trigger.__dict__["hook"] = hook
    trigger.async_hook = lambda: AsyncFake(hook)  # type: ignore[method-assign]
    trigger.task_instance = SimpleNamespace(dag_id="etl", task_id="ingest")
    _finished(hook, trigger.job_name, "Complete", "CompletionsReached", completedIndexes="0-3", succeeded=4)
    assert isinstance(await task_end.end_task(trigger, spec, _event(trigger.job_name)), TaskSuccessEvent)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    stage = spans["kbatch.stage ingest"]
    assert stage.parent is not None and stage.parent.span_id == 0x00F067AA0BA902B7
    assert spans["kbatch.results"].parent.span_id == stage.context.span_id
    assert {"kbatch.validate", "kbatch.submit", "kbatch.run"} <= set(spans)


async def test_a_traced_stage_resumes_in_a_worker_when_the_triggerer_has_no_tracer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _traced(monkeypatch)
    hook = FakeHook()
    trigger = deferred(operator(hook), _traced_context()).trigger
    trigger.__dict__["hook"] = hook
    trigger.async_hook = lambda: AsyncFake(hook)  # type: ignore[method-assign]
    trigger.task_instance = SimpleNamespace(dag_id="etl", task_id="ingest")
    _finished(hook, trigger.job_name, "Complete", "CompletionsReached", completedIndexes="0-3", succeeded=4)
    monkeypatch.setattr(task_end, "tracing_on", lambda: False)
    assert await task_end.end_task(trigger, trigger.end_task or {}, _event(trigger.job_name)) is None


def test_facts_are_a_frozen_record() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        EndFacts().enabled = False  # type: ignore[misc]
