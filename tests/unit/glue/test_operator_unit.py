"""KbatchJobOperator without a cluster: an in-memory hook records every call.

No I/O in the constructor; template fields are the arguments, unchanged; an invalid stage fails
before the first request and is not retried by Airflow; execute creates exactly one Job (the
manifest built by the spec layer) and defers with JSON-only kwargs; a 409 on create adopts the
Job when it is ours and fails clearly when it is not; execute_complete and on_kill decide from
the event and act through the hook.
"""

from __future__ import annotations

import copy
import json
import pickle
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException, TaskDeferred

from airflow_provider_kbatch.engine.submission import GENERATION_ANNOTATION
from airflow_provider_kbatch.errors import JobAlreadyExists
from airflow_provider_kbatch.operators.job import KbatchJobOperator
from airflow_provider_kbatch.spec.errors import KbatchSpecError
from airflow_provider_kbatch.spec.manifest import build_job_manifest, spec_hash
from airflow_provider_kbatch.spec.names import JobIdentity, selector_for
from airflow_provider_kbatch.spec.stage import PodOptions
from airflow_provider_kbatch.triggers.job import KbatchJobTrigger

RUN = "manual__2026-01-01T00:00:00+00:00"
NS = "batch"


def context(try_number: int = 1) -> dict[str, Any]:
    ti = SimpleNamespace(
        dag_id="etl", task_id="ingest", run_id=RUN, map_index=-1, try_number=try_number, xcom={}
    )
    ti.xcom_push = lambda key, value: ti.xcom.__setitem__(key, value)
    return {"ti": ti}


def identity(try_number: int = 1) -> JobIdentity:
    return JobIdentity(dag_id="etl", task_id="ingest", run_id=RUN, map_index=-1, try_number=try_number)


def _matches(labels: dict[str, str], selector: str | None) -> bool:
    if not selector:
        return True
    return all(labels.get(k) == v for k, v in (part.split("=", 1) for part in selector.split(",")))


class FakeHook:
    """The KbatchHook methods the operator uses, in memory; ``calls`` records (method, args)."""

    def __init__(self, *, create_error: Exception | None = None, version: tuple[int, int] = (1, 33)) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.jobs: dict[str, dict[str, Any]] = {}
        self.config_maps: dict[str, dict[str, Any]] = {}
        self.create_error = create_error
        self.version = version

    def server_version(self) -> tuple[int, int]:
        self.calls.append(("server_version",))
        return self.version

    def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("get_config_map", namespace, name))
        return copy.deepcopy(self.config_maps.get(name))

    def list_config_maps(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        self.calls.append(("list_config_maps", namespace, label_selector))
        wanted = dict(part.split("=", 1) for part in label_selector.split(",") if part)
        return [
            copy.deepcopy(cm)
            for cm in self.config_maps.values()
            if all(((cm.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in wanted.items())
        ]

    def update_config_map_cas(self, namespace: str, name: str, mutate: Any, **kwargs: Any) -> dict[str, str]:
        self.calls.append(("update_config_map_cas", namespace, name))
        data = mutate(dict((self.config_maps.get(name) or {}).get("data") or {}))
        self.config_maps[name] = {"metadata": {"name": name, "labels": kwargs.get("labels")}, "data": data}
        return dict(data)

    def list_jobs(
        self, namespace: str, label_selector: str | None = None, **kwargs: Any
    ) -> list[dict[str, Any]]:
        self.calls.append(("list_jobs", namespace, label_selector))
        return [
            copy.deepcopy(j) for j in self.jobs.values() if _matches(j["metadata"]["labels"], label_selector)
        ]

    def create_job(self, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("create_job", namespace, copy.deepcopy(manifest)))
        if self.create_error is not None:
            raise self.create_error
        job = copy.deepcopy(manifest)
        job["metadata"]["uid"] = f"uid-{len(self.jobs) + 1}"
        self.jobs[job["metadata"]["name"]] = job
        return copy.deepcopy(job)

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("get_job", namespace, name))
        return copy.deepcopy(self.jobs.get(name))

    def delete_job(self, namespace: str, name: str, propagation: str = "Foreground") -> bool:
        self.calls.append(("delete_job", namespace, name, propagation))
        return self.jobs.pop(name, None) is not None

    def set_suspend(self, namespace: str, name: str, suspend: bool) -> dict[str, Any]:
        self.calls.append(("set_suspend", namespace, name, suspend))
        self.jobs[name]["spec"]["suspend"] = suspend
        return copy.deepcopy(self.jobs[name])

    def list_pods(
        self, namespace: str, label_selector: str | None = None, **kwargs: Any
    ) -> list[dict[str, Any]]:
        self.calls.append(("list_pods", namespace, label_selector))
        return []

    def read_pod_log(self, namespace: str, pod: str, container: str | None = None, **kwargs: Any) -> str:
        self.calls.append(("read_pod_log", namespace, pod, container))
        return ""

    def methods(self) -> list[str]:
        return [c[0] for c in self.calls]


def operator(hook: FakeHook | None = None, **kwargs: Any) -> KbatchJobOperator:
    arguments: dict[str, Any] = {
        "task_id": "ingest",
        "image": "ghcr.io/example/worker:1",
        "command": ["python", "-m", "work"],
        "namespace": NS,
        "completions": 4,
        "parallelism": 2,
        **kwargs,
    }
    op = KbatchJobOperator(**arguments)
    if hook is not None:
        op.__dict__["hook"] = hook  # the cached_property, replaced
    return op


def expected_manifest(op: KbatchJobOperator, generation: int = 1) -> dict[str, Any]:
    return build_job_manifest(
        op.stage_spec(),
        identity(),
        generation=generation,
        namespace=NS,
        index_map=None,
        extra_env={"KBATCH_TRY_NUMBER": "1"},
        extra_annotations={GENERATION_ANNOTATION: str(generation)},
    )


def deferred(op: KbatchJobOperator, ctx: dict[str, Any] | None = None) -> TaskDeferred:
    with pytest.raises(TaskDeferred) as deferral:
        op.execute(ctx or context())
    return deferral.value


# --------------------------------------------------------------------------- construction


def test_constructor_does_no_io(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_kbatch.hooks import kbatch

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a hook was created in the constructor")

    monkeypatch.setattr(kbatch.KbatchHook, "__init__", forbidden)
    monkeypatch.setattr(kbatch.AsyncKbatchHook, "__init__", forbidden)
    op = operator(job_template="/does/not/exist.yaml", queue_name="team-a")  # nothing read or checked yet
    assert "hook" not in op.__dict__ and op.job_manifest is None


def test_template_fields_are_the_arguments_unchanged() -> None:
    arguments: dict[str, Any] = {
        "image": "{{ params.image }}",
        "command": ["python", "{{ ds }}"],
        "args": ["--date", "{{ ds }}"],
        "env": {"DATE": "{{ ds }}"},
        "namespace": "{{ params.ns }}",
        "job_template": {"spec": {"template": {"spec": {"nodeSelector": {"pool": "{{ params.pool }}"}}}}},
        "labels": {"team": "{{ params.team }}"},
        "annotations": {"note": "{{ run_id }}"},
        # templated since the Job-level fields are parameters of their own
        "conn_id": "{{ params.conn }}",
        "completions": "{{ params.n }}",
        "parallelism": "{{ params.p }}",
        "completion_mode": "{{ params.mode }}",
        "backoff_limit": "{{ params.b }}",
        "backoff_limit_per_index": "{{ params.bi }}",
        "max_failed_indexes": "{{ params.mfi }}",
        "fail_on_exit_codes": ["{{ params.code }}"],
        "pod_failure_policy": {"rules": []},
        "min_success_ratio": "{{ params.ratio }}",
        "success_indexes": "{{ params.ok }}",
        "success_policy": {"rules": []},
        "active_deadline_seconds": "{{ params.deadline }}",
        "ttl_seconds_after_finished": "{{ params.ttl }}",
        "suspend": "{{ params.suspend }}",
        "priority_class_name": "{{ params.priority }}",
        "queue_name": "{{ params.queue }}",
        "pod": PodOptions(service_account_name="{{ params.sa }}"),
        "disruption_budget": {"min_available": "{{ params.pdb }}"},
    }
    op = KbatchJobOperator(task_id="t", **arguments)
    assert isinstance(KbatchJobOperator.template_fields, tuple)
    for name in KbatchJobOperator.template_fields:
        if name == "job_manifest":  # not an argument: built from the others at render time
            assert op.job_manifest is None
            continue
        assert getattr(op, name) is arguments[name], f"{name} is not the argument, unchanged"
    assert set(KbatchJobOperator.template_fields) == {*arguments, "job_manifest"}


def test_rendered_manifest_is_the_manifest_that_is_created() -> None:
    hook = FakeHook()
    op = operator(hook)
    op.render_template_fields(context())
    rendered = copy.deepcopy(op.job_manifest)
    deferred(op)
    created = next(c[2] for c in hook.calls if c[0] == "create_job")
    assert rendered == created


def test_a_resumed_attempt_shows_the_job_that_ran_after_execution() -> None:
    """Rendered before execute, the manifest is the first attempt's; the resumed Job runs only the
    failed index: execute_complete puts that Job in the rendered fields (overwritten at the end)."""
    hook = FakeHook()
    first = operator(hook)
    name = deferred(first).trigger.job_name
    _finished(hook, name, "Failed", "FailedIndexes", completedIndexes="0-1,3", failedIndexes="2")
    event = {"status": "finished", "namespace": NS, "name": name, "uid": "uid-1"}
    with pytest.raises(AirflowException):
        first.execute_complete(context(), event)

    retry = operator(hook)
    retry.render_template_fields(context(try_number=2))
    assert retry.job_manifest is not None and retry.job_manifest["spec"]["completions"] == 4
    resumed = deferred(retry, context(try_number=2)).trigger
    assert resumed.index_map == "2"
    again = operator(hook)  # the task resumes from deferral in a new process: rendered again
    again.render_template_fields(context(try_number=2))
    _finished(hook, resumed.job_name, "Complete", "CompletionsReached", completedIndexes="0", succeeded=1)
    event = {"status": "finished", "namespace": NS, "name": resumed.job_name, "uid": "uid-2"}
    result = again.execute_complete(context(try_number=2), event)
    assert result["completed_indexes"] == "0-3"
    assert KbatchJobOperator.overwrite_rtif_after_execution is True
    ran = again.job_manifest
    assert ran is not None and ran["metadata"]["name"] == resumed.job_name and "status" not in ran
    assert ran["spec"]["completions"] == 1 and ran["metadata"]["annotations"]["kbatch.io/index-map"] == "2"


# --------------------------------------------------------------------------- validation before any request


def test_invalid_stage_fails_before_any_request_and_is_not_retried() -> None:
    hook = FakeHook()
    op = operator(hook, completion_mode="NonIndexed", backoff_limit_per_index=1, min_success_ratio=1.5)
    with pytest.raises(AirflowFailException) as failure:
        op.execute(context())
    assert hook.calls == [], "nothing may be sent"
    err = failure.value
    assert isinstance(err, KbatchSpecError), "still the spec error, with every field named"
    assert {e.field for e in err.errors} == {"backoff_limit_per_index", "min_success_ratio"}
    text = str(err)
    assert "backoff_limit_per_index" in text and "min_success_ratio" in text and "got 1.5" in text


def test_one_invalid_field_names_it() -> None:
    hook = FakeHook()
    op = operator(hook, max_failed_indexes=-1, backoff_limit_per_index=1)
    with pytest.raises(AirflowFailException) as failure:
        op.execute(context())
    assert hook.calls == []
    assert isinstance(failure.value, KbatchSpecError) and failure.value.field == "max_failed_indexes"
    assert str(failure.value).startswith("max_failed_indexes: must be at least 0, got -1.")
    again = pickle.loads(pickle.dumps(failure.value))  # crosses process boundaries intact
    assert isinstance(again, AirflowFailException) and str(again) == str(failure.value)


def test_cluster_too_old_for_a_field_fails_after_the_version_request_only() -> None:
    hook = FakeHook(version=(1, 28))
    op = operator(hook, backoff_limit_per_index=1)
    with pytest.raises(AirflowFailException) as failure:
        op.execute(context())
    assert hook.methods() == ["server_version"]
    assert "backoff_limit_per_index" in str(failure.value)


# --------------------------------------------------------------------------- submission


def test_execute_creates_exactly_one_job_and_defers_with_json_kwargs() -> None:
    hook = FakeHook()
    op = operator(hook, queue_timeout=60, progress_interval=5)
    deferral = deferred(op)

    creates = [c for c in hook.calls if c[0] == "create_job"]
    assert len(creates) == 1
    _, namespace, body = creates[0]
    assert namespace == NS and body == expected_manifest(op)
    assert body["kind"] == "Job" and body["spec"]["completions"] == 4 and body["spec"]["parallelism"] == 2
    assert body["metadata"]["annotations"]["kbatch.io/spec-hash"] == spec_hash(op.stage_spec())
    # looked for this task instance's Jobs first, then recorded the attempt in the run ledger
    assert ("list_jobs", NS, selector_for(identity())) in hook.calls
    assert hook.methods().index("list_jobs") < hook.methods().index("create_job")
    assert hook.methods()[-1] == "update_config_map_cas"
    assert "delete_job" not in hook.methods()

    trigger = deferral.trigger
    assert isinstance(trigger, KbatchJobTrigger) and deferral.method_name == "execute_complete"
    _path, kwargs = trigger.serialize()
    assert json.loads(json.dumps(kwargs)) == kwargs, "trigger kwargs must be plain JSON"
    assert kwargs["job_name"] == body["metadata"]["name"] and kwargs["job_uid"] == "uid-1"
    assert kwargs["index_map"] == "0-3" and kwargs["wait"]["queue_timeout"] == 60
    assert kwargs["wait"]["progress_interval"] == 5 and kwargs["on_kill_action"] == "delete"


def test_second_execute_of_the_same_try_adopts_instead_of_creating() -> None:
    hook = FakeHook()
    first = deferred(operator(hook))
    hook.calls.clear()
    second = deferred(operator(hook))
    assert "create_job" not in hook.methods()
    assert second.trigger.serialize()[1]["job_uid"] == first.trigger.serialize()[1]["job_uid"] == "uid-1"
    assert len(hook.jobs) == 1


def test_queue_name_creates_the_job_suspended_with_the_kueue_label() -> None:
    hook = FakeHook()
    deferred(operator(hook, queue_name="team-a"))
    (job,) = hook.jobs.values()
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"


def test_409_on_create_adopts_the_job_when_it_is_ours() -> None:
    op = operator()
    ours = copy.deepcopy(expected_manifest(op))
    ours["metadata"]["uid"] = "uid-created-by-a-concurrent-execute"
    hook = FakeHook(create_error=JobAlreadyExists(ours))
    op.__dict__["hook"] = hook
    deferral = deferred(op)
    assert hook.methods().count("create_job") == 1
    assert deferral.trigger.serialize()[1]["job_uid"] == "uid-created-by-a-concurrent-execute"


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(
            lambda j: j["metadata"]["labels"].update({"kbatch.io/dag-id": "other"}), id="other-task"
        ),
        pytest.param(
            lambda j: j["metadata"]["annotations"].update({"kbatch.io/spec-hash": "0" * 64}), id="other-spec"
        ),
    ],
)
def test_409_on_create_fails_clearly_when_the_job_is_not_ours(tamper: Any) -> None:
    op = operator()
    theirs = copy.deepcopy(expected_manifest(op))
    theirs["metadata"]["uid"] = "uid-someone-else"
    tamper(theirs)
    hook = FakeHook(create_error=JobAlreadyExists(theirs))
    op.__dict__["hook"] = hook
    with pytest.raises(AirflowFailException, match="was not created for this task instance and spec"):
        op.execute(context())
    assert "update_config_map_cas" not in hook.methods()[hook.methods().index("create_job") :]


# --------------------------------------------------------------------------- after the wait


def _finished(hook: FakeHook, name: str, condition: str, reason: str, **status: Any) -> None:
    job = hook.jobs[name]
    job["status"] = {"conditions": [{"type": condition, "status": "True", "reason": reason}], **status}


def test_execute_complete_returns_the_result_of_a_complete_job() -> None:
    hook = FakeHook()
    op = operator(hook)
    name = deferred(op).trigger.job_name
    _finished(hook, name, "Complete", "CompletionsReached", completedIndexes="0-3", succeeded=4)
    event = {"status": "finished", "namespace": NS, "name": name, "uid": "uid-1", "queued_seconds": 0.0}
    result = op.execute_complete(context(), event)
    assert result["name"] == name and result["completed_indexes"] == "0-3" and result["failed_indexes"] == ""


def test_execute_complete_fail_job_rule_is_not_retried() -> None:
    hook = FakeHook()
    op = operator(hook, fail_on_exit_codes=[42])
    name = deferred(op).trigger.job_name
    _finished(hook, name, "Failed", "PodFailurePolicy", failedIndexes="1")
    event = {"status": "finished", "namespace": NS, "name": name, "uid": "uid-1"}
    with pytest.raises(AirflowFailException, match="FailJob rule matched"):
        op.execute_complete(context(), event)


def test_execute_complete_backoff_limit_is_retried() -> None:
    hook = FakeHook()
    op = operator(hook)
    name = deferred(op).trigger.job_name
    _finished(hook, name, "Failed", "BackoffLimitExceeded", failed=7)
    event = {"status": "finished", "namespace": NS, "name": name, "uid": "uid-1"}
    with pytest.raises(AirflowException) as failure:
        op.execute_complete(context(), event)
    assert not isinstance(failure.value, AirflowFailException)


@pytest.mark.parametrize(("action", "call"), [("delete", "delete_job"), ("suspend", "set_suspend")])
def test_queue_timeout_event_stops_the_job_and_names_queue_timeout(action: str, call: str) -> None:
    hook = FakeHook()
    op = operator(hook, queue_name="team-a", queue_timeout=3, on_kill=action)
    name = deferred(op).trigger.job_name
    event = {"status": "queue_timeout", "namespace": NS, "name": name, "uid": "uid-1", "queued_seconds": 3.4}
    with pytest.raises(AirflowException, match=r"queue_timeout=3s") as failure:
        op.execute_complete(context(), event)
    assert f"{action}d" in str(failure.value)
    assert hook.calls[-1][:3] == (call, NS, name)


@pytest.mark.parametrize(
    ("status", "message"),
    [("deleted", "was deleted before it finished"), ("error", "waiting for job batch/")],
)
def test_execute_complete_deleted_or_error(status: str, message: str) -> None:
    op = operator(FakeHook())
    with pytest.raises(AirflowException, match=message):
        op.execute_complete(
            context(), {"status": status, "namespace": NS, "name": "kb-x-g1", "error": "boom"}
        )


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("delete", ("delete_job", NS, None, "Foreground")),
        ("suspend", ("set_suspend", NS, None, True)),
        ("keep", None),
    ],
)
def test_on_kill_after_submission(action: str, expected: tuple[Any, ...] | None) -> None:
    hook = FakeHook()
    op = operator(hook, on_kill=action, deferrable=False)
    op.deferrable = True  # submit and stop at the deferral, as if the wait were under way
    name = deferred(op).trigger.job_name
    hook.calls.clear()
    op.on_kill()
    if expected is None:
        assert hook.calls == []
    else:
        assert hook.calls == [("get_job", NS, name), (expected[0], NS, name, expected[3])]


def test_on_kill_leaves_a_finished_job_alone() -> None:
    """Killed while resuming after the trigger fired: the completed Job is what a retry resumes from."""
    hook = FakeHook()
    op = operator(hook, on_kill="delete", deferrable=False)
    op.deferrable = True
    name = deferred(op).trigger.job_name
    hook.jobs[name]["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    hook.calls.clear()
    op.on_kill()
    assert hook.calls == [("get_job", NS, name)]


def test_on_kill_before_submission_does_nothing() -> None:
    hook = FakeHook()
    operator(hook).on_kill()
    assert hook.calls == []
