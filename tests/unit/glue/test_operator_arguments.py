"""KbatchJobOperator's arguments through its public surface: the constructor, templating
(``render_template_fields``) and ``execute`` against an in-memory hook.

Every argument a user can get wrong is checked after templating and before anything is sent,
names its field and fails without Airflow retries; the namespace comes from the connection when
not given; templated numbers work; the signature and ``StageSpec`` stay in step; the stage is
built once per try; inputs are inlets.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import re
from types import SimpleNamespace
from typing import Any

import pendulum
import pytest
from airflow.sdk import DAG, Asset, AssetAlias
from airflow.sdk.exceptions import AirflowException, AirflowFailException, TaskDeferred

from airflow_provider_kbatch.engine.trigger_end import job_as_ran
from airflow_provider_kbatch.glue.errors import KbatchInvalidStage
from airflow_provider_kbatch.operators import job as job_module
from airflow_provider_kbatch.operators.job import (
    KbatchDeleteJobOperator,
    KbatchJobOperator,
    KbatchResumeJobOperator,
    KbatchSuspendJobOperator,
    PodOptions,
)
from airflow_provider_kbatch.pipeline.workspace import Workspace
from airflow_provider_kbatch.sensors.job import KbatchJobSensor
from airflow_provider_kbatch.spec.errors import KbatchSpecError
from airflow_provider_kbatch.spec.stage import RunAs, StageSpec
from tests.unit.glue.test_operator_unit import FakeHook

RUN = "manual__2026-01-01T00:00:00+00:00"


class ConnHook(FakeHook):
    """FakeHook whose connection has a ``namespace`` extra (``get_namespace`` reads no cluster)."""

    def __init__(self, connection_namespace: str = "default", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.connection_namespace = connection_namespace

    def get_namespace(self) -> str:
        self.calls.append(("get_namespace",))
        return self.connection_namespace

    def requests(self) -> list[tuple[Any, ...]]:
        """The calls that reach the API server."""
        return [c for c in self.calls if c[0] != "get_namespace"]


def context(try_number: int = 1, **params: Any) -> dict[str, Any]:
    ti = SimpleNamespace(
        dag_id="etl", task_id="stage", run_id=RUN, map_index=-1, try_number=try_number, xcom={}
    )
    ti.xcom_push = lambda key, value: ti.xcom.__setitem__(key, value)
    return {"ti": ti, "params": params, "run_id": RUN, "ds": "2026-01-01"}


def operator(hook: FakeHook | None, **kwargs: Any) -> KbatchJobOperator:
    arguments: dict[str, Any] = {
        "task_id": "stage",
        "image": "ghcr.io/example/worker:1",
        "command": ["python", "-m", "work"],
        **kwargs,
    }
    op = KbatchJobOperator(**arguments)
    if hook is not None:
        op.__dict__["hook"] = hook
    return op


def run(op: KbatchJobOperator, ctx: dict[str, Any]) -> TaskDeferred:
    """Render, then execute up to the deferral (what a worker does)."""
    op.render_template_fields(ctx)
    with pytest.raises(TaskDeferred) as deferral:
        op.execute(ctx)
    return deferral.value


def invalid(op: KbatchJobOperator, ctx: dict[str, Any]) -> KbatchSpecError:
    """Render and execute: the task must fail without retries, naming the field(s)."""
    op.render_template_fields(ctx)
    with pytest.raises(AirflowFailException) as failure:
        op.execute(ctx)
    err = failure.value
    assert isinstance(err, KbatchInvalidStage) and isinstance(err, KbatchSpecError), type(err)
    return err


def fields_of(err: KbatchSpecError) -> set[str]:
    return {e.field for e in err.errors} if hasattr(err, "errors") else {err.field}


# --------------------------------------------------------------------------- 1. types as given


@pytest.mark.parametrize("name", ["command", "args"])
def test_a_single_string_command_or_args_fails_naming_it_and_is_not_submitted(name: str) -> None:
    """``command="echo hello"`` used to become ('e', 'c', 'h', ...) and be retried for minutes."""
    hook = ConnHook()
    err = invalid(operator(hook, namespace="batch", **{name: "echo hello"}), context())
    assert err.field == name and "is a single string" in str(err) and "['sh', '-c'" in str(err)
    assert hook.requests() == []


@pytest.mark.parametrize(
    ("kwargs", "field", "text"),
    [
        pytest.param({"env": "A=1"}, "env", "must be a dict", id="env-string"),
        pytest.param({"env": [("A", "1")]}, "env", "must be a dict", id="env-pairs"),
        pytest.param({"labels": [("team", "data")]}, "labels", "must be a dict", id="labels-pairs"),
        pytest.param({"annotations": "note"}, "annotations", "must be a dict", id="annotations-string"),
        pytest.param({"completions": 2.5}, "completions", "must be an int", id="completions-float"),
        pytest.param({"parallelism": "two"}, "parallelism", "got str 'two'", id="parallelism-word"),
        pytest.param({"fail_on_exit_codes": 42}, "fail_on_exit_codes", "list of ints", id="exit-code-int"),
        pytest.param({"job_template": ["spec"]}, "job_template", "must be a dict", id="template-list"),
        pytest.param(
            {"resources": {"requests": [("cpu", "1")]}},
            "resources.requests",
            "must be a mapping",
            id="requests",
        ),
        pytest.param(
            {"stage_options": {"nope": 1}}, "stage_options['nope']", "not a StageSpec", id="unknown"
        ),
        pytest.param({"stage_options": "x"}, "stage_options", "must be a mapping", id="options-string"),
        pytest.param({"pod": "restricted"}, "pod", "must be PodOptions", id="pod-string"),
        pytest.param(
            {"backoff_limit": 1, "stage_options": {"backoff_limit": 2}},
            "backoff_limit",
            "given twice",
            id="twice",
        ),
    ],
)
def test_every_conversion_leaves_the_users_value_to_validation(
    kwargs: dict[str, Any], field: str, text: str
) -> None:
    hook = ConnHook()
    err = invalid(operator(hook, namespace="batch", **kwargs), context())
    assert field in fields_of(err), str(err)
    assert text in str(err)
    assert hook.requests() == []


# --------------------------------------------------------------------------- 2. the namespace


def test_the_namespace_defaults_to_the_connections_for_job_ledger_and_trigger() -> None:
    hook = ConnHook("team-a")
    deferral = run(operator(hook), context())
    created = [c for c in hook.calls if c[0] == "create_job"]
    assert [c[1] for c in created] == ["team-a"] and created[0][2]["metadata"]["namespace"] == "team-a"
    namespaces = {c[1] for c in hook.requests() if len(c) > 1}
    assert namespaces == {"team-a"}, "ledger, lookups and the Job: one namespace"
    assert deferral.trigger.serialize()[1]["namespace"] == "team-a"


def test_an_explicit_namespace_wins_and_the_connection_is_not_read() -> None:
    hook = ConnHook("team-a")
    run(operator(hook, namespace="{{ params.ns }}"), context(ns="batch"))
    assert ("get_namespace",) not in hook.calls
    assert {c[1] for c in hook.requests() if len(c) > 1} == {"batch"}


@pytest.mark.parametrize("namespace", ["Bad_Namespace", "", "a" * 64])
def test_an_invalid_rendered_namespace_fails_before_any_request(namespace: str) -> None:
    hook = ConnHook()
    err = invalid(operator(hook, namespace="{{ params.ns }}"), context(ns=namespace))
    assert err.field == "namespace" and hook.calls == []


def test_an_invalid_namespace_in_the_connection_names_the_connection() -> None:
    hook = ConnHook("Team_A")
    err = invalid(operator(hook, conn_id="k8s"), context())
    assert err.field == "namespace" and "'Team_A'" in str(err) and "connection 'k8s'" in str(err)
    assert hook.requests() == []


def test_a_namespace_mistake_is_reported_with_the_stages() -> None:
    hook = ConnHook()
    err = invalid(operator(hook, namespace="Bad", completions=0), context())
    assert fields_of(err) == {"namespace", "completions"}


@pytest.mark.parametrize(
    ("cls", "call"),
    [
        (KbatchDeleteJobOperator, "delete_job"),
        (KbatchSuspendJobOperator, "set_suspend"),
        (KbatchResumeJobOperator, "set_suspend"),
    ],
)
def test_lifecycle_operators_use_the_connections_namespace_and_check_it(cls: type, call: str) -> None:
    hook = ConnHook("team-a")
    hook.jobs["a"] = {"metadata": {"name": "a", "labels": {}}, "spec": {}}
    op = cls(task_id="op", job_name="a")
    op.__dict__["hook"] = hook
    assert op.execute({}) == ["a"]
    assert hook.requests()[0][:3] == (call, "team-a", "a")
    bad = cls(task_id="op", job_name="a", namespace="{{ params.ns }}")
    bad.__dict__["hook"] = hook
    bad.render_template_fields({"params": {"ns": "Bad_Namespace"}})
    hook.calls.clear()
    with pytest.raises(AirflowFailException, match="namespace: 'Bad_Namespace'"):
        bad.execute({})
    assert hook.calls == []


def test_job_sensor_uses_the_connections_namespace_and_checks_it() -> None:
    hook = ConnHook("team-a")
    sensor = KbatchJobSensor(task_id="wait", job_name="etl", mode="poke")
    sensor.__dict__["hook"] = hook
    assert sensor.poke({}) is False
    assert hook.requests() == [("get_job", "team-a", "etl")]
    bad = KbatchJobSensor(task_id="wait", job_name="etl", namespace="Bad_Namespace", deferrable=True)
    bad.__dict__["hook"] = hook
    hook.calls.clear()
    with pytest.raises(AirflowFailException, match="namespace: 'Bad_Namespace'"):
        bad.execute({})
    assert hook.calls == []


def test_outputs_and_inputs_of_a_namespace_from_the_connection_are_aliases_until_run_time() -> None:
    """The namespace is read from the connection when the task runs (no I/O at parse time): the
    outlet and the inlets are AssetAliases; the producing stage attaches the Asset of the
    namespace it ran in."""
    with DAG("etl", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
        op = KbatchJobOperator(
            task_id="t", image="i", inputs=["raw"], output="clean", workspace=Workspace(create=True)
        )
    assert op.outlets == [AssetAlias(name="kbatch:etl/clean")]
    assert op.inlets == [AssetAlias(name="kbatch:etl/raw")]


# --------------------------------------------------------------------------- 3. job_template shape


@pytest.mark.parametrize(
    ("template", "field", "text"),
    [
        ({"spec": {"template": "x"}}, "job_template.spec.template", "must be a mapping, got str"),
        ({"spec": "x"}, "job_template.spec", "must be a mapping, got str"),
        ({"metadata": ["a"]}, "job_template.metadata", "must be a mapping, got list"),
        (
            {"spec": {"template": {"spec": []}}},
            "job_template.spec.template.spec",
            "must be a mapping, got list",
        ),
        (
            {"spec": {"template": {"spec": {"containers": {"name": "side"}}}}},
            "job_template.spec.template.spec.containers",
            "must be a list, got dict",
        ),
        (
            {"spec": {"template": {"spec": {"containers": ["busybox"]}}}},
            "job_template.spec.template.spec.containers[0]",
            "must be a mapping, got str",
        ),
        (
            {"spec": {"template": {"spec": {"containers": [{"image": "busybox"}]}}}},
            "job_template.spec.template.spec.containers[0].name",
            "is missing",
        ),
        (
            {"spec": {"template": {"metadata": {"labels": "a=b"}}}},
            "job_template.spec.template.metadata.labels",
            "must be a mapping, got str",
        ),
    ],
)
def test_a_malformed_job_template_is_named_not_dropped(
    template: dict[str, Any], field: str, text: str
) -> None:
    hook = ConnHook()
    err = invalid(operator(hook, namespace="batch", job_template=template), context())
    assert field in fields_of(err), str(err)
    assert f"{field}: {text}" in str(err)
    assert hook.requests() == []


# --------------------------------------------------------------------------- 6. templated numbers


def test_templated_completions_render_to_an_int() -> None:
    hook = ConnHook()
    op = operator(hook, namespace="batch", completions="{{ params.n }}", parallelism="{{ params.p }}")
    deferral = run(op, context(n=6, p="2"))
    (body,) = [c[2] for c in hook.calls if c[0] == "create_job"]
    assert body["spec"]["completions"] == 6 and body["spec"]["parallelism"] == 2
    assert deferral.trigger.serialize()[1]["index_map"] == "0-5"


@pytest.mark.parametrize(
    ("kwargs", "params", "field"),
    [
        ({"completions": "{{ params.n }}"}, {"n": "six"}, "completions"),
        ({"backoff_limit": "{{ params.b }}"}, {"b": "-1"}, "backoff_limit"),
        ({"min_success_ratio": "{{ params.r }}"}, {"r": "most"}, "min_success_ratio"),
        ({"suspend": "{{ params.s }}"}, {"s": "maybe"}, "suspend"),
        ({"active_deadline_seconds": "{{ params.d }}"}, {"d": "1h"}, "active_deadline_seconds"),
    ],
)
def test_a_templated_number_that_is_not_one_fails_naming_the_field(
    kwargs: dict[str, Any], params: dict[str, Any], field: str
) -> None:
    hook = ConnHook()
    err = invalid(operator(hook, namespace="batch", **kwargs), context(**params))
    assert fields_of(err) == {field}
    assert hook.requests() == []


def test_job_level_fields_people_parameterize_are_templated() -> None:
    hook = ConnHook()
    op = operator(
        hook,
        namespace="batch",
        completions="{{ params.n }}",
        backoff_limit_per_index="{{ params.bi }}",
        max_failed_indexes="{{ params.mfi }}",
        active_deadline_seconds="{{ params.deadline }}",
        min_success_ratio="{{ params.ratio }}",
        fail_on_exit_codes=["{{ params.code }}"],
        priority_class_name="{{ params.priority }}",
        queue_name="{{ params.queue }}",
        suspend="{{ params.suspend }}",
        ttl_seconds_after_finished="{{ params.ttl }}",
        resources={"requests": {"cpu": "{{ params.cpu }}"}},
        pod=PodOptions(service_account_name="{{ params.sa }}", node_selector={"pool": "{{ params.pool }}"}),
    )
    params = {
        "n": "4",
        "bi": "1",
        "mfi": "2",
        "deadline": "600",
        "ratio": "0.5",
        "code": "42",
        "priority": "batch-low",
        "queue": "team-a",
        "suspend": "False",
        "ttl": "None",
        "cpu": "250m",
        "sa": "runner",
        "pool": "gpu",
    }
    run(op, context(**params))
    (body,) = [c[2] for c in hook.calls if c[0] == "create_job"]
    spec, pod = body["spec"], body["spec"]["template"]["spec"]
    assert spec["completions"] == 4 and spec["backoffLimitPerIndex"] == 1 and spec["maxFailedIndexes"] == 2
    assert spec["activeDeadlineSeconds"] == 600 and "ttlSecondsAfterFinished" not in spec
    assert spec["successPolicy"]["rules"] == [{"succeededCount": 2}]
    assert any(
        r["onExitCodes"]["values"] == [42] for r in spec["podFailurePolicy"]["rules"] if "onExitCodes" in r
    )
    assert body["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert pod["priorityClassName"] == "batch-low" and pod["serviceAccountName"] == "runner"
    assert pod["nodeSelector"] == {"pool": "gpu"}
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "250m"}}


def test_conn_id_is_templated() -> None:
    op = operator(None, namespace="batch", conn_id="{{ params.conn }}")
    op.render_template_fields(context(conn="k8s-team-a"))
    assert op.conn_id == "k8s-team-a" and op.hook.conn_id == "k8s-team-a"


def test_a_rendered_pod_option_that_is_wrong_is_named_as_a_pod_field() -> None:
    hook = ConnHook()
    op = operator(hook, namespace="batch", pod=PodOptions(service_account_name="{{ params.sa }}"))
    err = invalid(op, context(sa="Not A Name"))
    assert fields_of(err) == {"pod.service_account_name"}


# --------------------------------------------------------------------------- 7. signature and StageSpec


def _parameters() -> dict[str, inspect.Parameter]:
    params = dict(inspect.signature(KbatchJobOperator.__init__).parameters)
    params.pop("self")
    params.pop("kwargs")
    return params


def test_every_stage_spec_field_is_one_parameter_or_one_pod_option() -> None:
    spec_fields = {f.name for f in dataclasses.fields(StageSpec)}
    pod_fields = {f.name for f in dataclasses.fields(PodOptions)}
    parameters = set(_parameters())
    as_parameter = spec_fields & parameters
    assert pod_fields <= spec_fields, pod_fields - spec_fields
    assert not (as_parameter & pod_fields), as_parameter & pod_fields
    assert as_parameter | pod_fields == spec_fields, spec_fields - as_parameter - pod_fields
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in _parameters().values())


def test_stage_parameters_default_to_the_stage_specs_defaults() -> None:
    defaults = StageSpec(image="i")
    for name, parameter in _parameters().items():
        if name in {f.name for f in dataclasses.fields(StageSpec)} and name != "image":
            expected = getattr(defaults, name)
            assert parameter.default == expected or (parameter.default is None and not expected), name
    pod = PodOptions()
    for name, value in pod.spec_fields().items():
        assert value == getattr(defaults, name), name


def test_every_parameter_and_pod_option_is_documented_and_templated_fields_say_so() -> None:
    doc = inspect.getdoc(KbatchJobOperator) or ""
    documented = dict(re.findall(r":param (\w+): (.*?)(?=\n\s*:param |\n\n|\Z)", doc, re.S))
    missing = set(_parameters()) - set(documented)
    assert not missing, f"undocumented parameters: {sorted(missing)}"
    for name in KbatchJobOperator.template_fields:
        if name == "job_manifest":  # built from the others at render time
            continue
        assert name in _parameters(), f"template field {name} is not a parameter"
        assert "(templated" in " ".join(documented[name].split()), f":param {name}: does not say templated"
    pod_doc = inspect.getdoc(PodOptions) or ""
    for f in dataclasses.fields(PodOptions):
        assert f":param {f.name}:" in pod_doc, f.name


def test_pod_options_are_frozen_and_validate_themselves() -> None:
    options = PodOptions(node_selector={"pool": "gpu"}, tolerations=[{"operator": "Exists"}])
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.working_dir = "/x"  # type: ignore[misc]
    assert options.tolerations == ({"operator": "Exists"},)
    with pytest.raises(KbatchSpecError) as err:
        PodOptions(run_as=RunAs(user=0))
    assert err.value.field == "pod.run_as.user"
    with pytest.raises(KbatchSpecError) as err:
        PodOptions(pod_security="strict", volumes="scratch")  # type: ignore[arg-type]
    assert {e.field for e in err.value.errors} == {"pod.pod_security", "pod.volumes"}
    PodOptions(service_account_name="{{ params.sa }}")  # a template: checked after rendering


def test_pod_options_reach_the_manifest_and_old_keywords_still_work() -> None:
    pod = PodOptions(working_dir="/work", volumes=[{"name": "s", "emptyDir": {}}])
    new = operator(None, namespace="batch", pod=pod)
    with pytest.warns(DeprecationWarning, match="pod=PodOptions"):
        old = operator(None, namespace="batch", working_dir="/work", volumes=[{"name": "s", "emptyDir": {}}])
    legacy = operator(None, namespace="batch", stage_options={"working_dir": "/work", "volumes": pod.volumes})
    assert new.stage_spec() == old.stage_spec() == legacy.stage_spec()
    assert new.stage_spec().working_dir == "/work" and new.stage_spec().volumes == pod.volumes


# --------------------------------------------------------------------------- 8. built once per try


def test_the_stage_is_built_validated_and_wired_once_per_try(monkeypatch: pytest.MonkeyPatch) -> None:
    counts = {"spec": 0, "validate": 0, "wire": 0, "manifest": 0}

    def counting(name: str, original: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return original(*args, **kwargs)

        return wrapper

    for attr, name in (
        ("StageSpec", "spec"),
        ("stage_problems", "validate"),
        ("wire_stage", "wire"),
        ("build_job_manifest", "manifest"),
    ):
        monkeypatch.setattr(job_module, attr, counting(name, getattr(job_module, attr)))

    from airflow_provider_kbatch.engine import storage

    def prepare_stage(hook: Any, namespace: str, identity: Any, *, spec: Any, **kwargs: Any) -> Any:
        from airflow_provider_kbatch.pipeline import workspace as ws

        claim = ws.claim_name(identity.dag_id, identity.run_id)
        wired = ws.wire_stage(spec, kwargs["workspace"], kwargs["ports"], identity, claim)
        return storage.PreparedStage(wired, claim, {})

    monkeypatch.setattr(storage, "prepare_stage", prepare_stage)
    hook = ConnHook()
    op = operator(hook, namespace="batch", completions=3, workspace=Workspace(create=True), output="o")
    deferral = run(op, context())
    assert counts == {"spec": 1, "validate": 1, "wire": 1, "manifest": 1}
    created = next(c[2] for c in hook.calls if c[0] == "create_job")
    name = deferral.trigger.job_name
    # the rendered field: the Job created, as the API server returned it (with its uid)
    assert op.job_manifest == job_as_ran(hook.jobs[name]) and op.job_manifest["spec"] == created["spec"]

    hook.jobs[name]["status"] = {
        "conditions": [{"type": "Complete", "status": "True", "reason": "CompletionsReached"}],
        "completedIndexes": "0-2",
        "succeeded": 3,
    }
    event = {"status": "finished", "namespace": "batch", "name": name, "uid": "uid-1"}
    resumed = operator(hook, namespace="batch", completions=3, workspace=Workspace(create=True), output="o")
    with pytest.raises(AirflowException):  # no output manifest reported by the (fake) pods
        resumed.execute_complete(context(), event, **deferral.kwargs)
    assert counts == {"spec": 1, "validate": 1, "wire": 1, "manifest": 1}, (
        "execute_complete rebuilt the stage"
    )
    assert deferral.kwargs == {"completions": 3}  # all execute_complete needs of the stage


def test_execute_complete_of_an_older_deferral_reads_the_hash_from_the_job() -> None:
    hook = ConnHook()
    deferral = run(operator(hook, namespace="batch", completions=2), context())
    name = deferral.trigger.job_name
    hook.jobs[name]["status"] = {
        "conditions": [{"type": "Complete", "status": "True", "reason": "CompletionsReached"}],
        "completedIndexes": "0-1",
    }
    old = operator(hook, namespace="batch", completions=2)
    result = old.execute_complete(context(), {"status": "finished", "namespace": "batch", "name": name})
    assert result["completed_indexes"] == "0-1" and result["completions"] == 2


# --------------------------------------------------------------------------- 9. inlets


def test_inputs_are_inlets_with_the_producers_asset() -> None:
    with DAG("etl", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
        ws = Workspace(create=True)
        ingest = KbatchJobOperator(task_id="ingest", image="i", namespace="batch", workspace=ws, output="raw")
        transform = KbatchJobOperator(
            task_id="transform",
            image="i",
            namespace="batch",
            workspace=ws,
            inputs={"raw": "ingest"},
            output="clean",
        )
        templated = KbatchJobOperator(
            task_id="publish", image="i", namespace="{{ params.ns }}", workspace=ws, inputs=["clean"]
        )
    assert ingest.outlets == [Asset(uri="kbatch://batch/etl/raw")] and ingest.inlets == []
    assert transform.inlets == ingest.outlets
    assert transform.outlets == [Asset(uri="kbatch://batch/etl/clean")]
    assert templated.inlets == [AssetAlias(name="kbatch:etl/clean")]


def test_inlets_survive_dag_serialization() -> None:
    from airflow.serialization.serialized_objects import DagSerialization

    with DAG("etl", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
        KbatchJobOperator(
            task_id="t", image="i", namespace="batch", workspace=Workspace(create=True), inputs=["raw"]
        )
    task = DagSerialization.from_dict(DagSerialization.to_dict(dag)).get_task("t")
    assert [a.uri for a in task.inlets] == ["kbatch://batch/etl/raw"]


def test_the_rendered_manifest_of_a_copy_is_the_same() -> None:
    """Airflow copies operators (mapped tasks, ``airflow tasks render``): the stage cache is not
    shared state that leaks between copies."""
    op = operator(ConnHook(), namespace="batch", completions="{{ params.n }}")
    twin = copy.deepcopy(op)
    op.render_template_fields(context(n=2))
    twin.render_template_fields(context(n=3))
    assert op.job_manifest is not None and twin.job_manifest is not None
    assert op.job_manifest["spec"]["completions"] == 2 and twin.job_manifest["spec"]["completions"] == 3
