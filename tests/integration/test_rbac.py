"""The Helm chart's Role (``deploy/helm/kbatch/templates/rbac.yaml``, the one source of the
provider's RBAC) is exactly what the provider needs: enough for everything it does, and no more.

A fresh namespace gets the chart's ServiceAccount, Role and RoleBinding (rendered by the real
``helm template``, applied with kubectl); a token for the ServiceAccount comes from the
TokenRequest API; a kubeconfig holding only that token drives ``KbatchHook(config_file=...)``
and ``AsyncKbatchHook(config_file=...)`` through the provider's own code paths (manifest,
create/adopt, the trigger's watch with log streaming, the outcome read with the ledger, the
output sensor's lookup and watch, suspend/resume, kill, workspace claims, diagnostics). Every
request they send is recorded and mapped to its RBAC (resource, verb): the set must equal what
the Role grants -- a grant nothing uses is reported as excess. Then what the provider must not be able to do is
shown to be forbidden: bare Pods, Secrets, exec, other namespaces, RBAC objects.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from airflow_provider_kbatch.engine import first_event, ledger
from airflow_provider_kbatch.engine.disruption import ensure_budget
from airflow_provider_kbatch.engine.outcome import finish_stage
from airflow_provider_kbatch.engine.submission import submit
from airflow_provider_kbatch.engine.waiter import WaitSettings, wait_for_job
from airflow_provider_kbatch.errors import KbatchApiError
from airflow_provider_kbatch.hooks import calls
from airflow_provider_kbatch.hooks.kbatch import AsyncKbatchHook, KbatchHook
from airflow_provider_kbatch.pipeline import records as rules
from airflow_provider_kbatch.spec.intervals import IndexSet
from airflow_provider_kbatch.spec.manifest import build_job_manifest, spec_hash
from airflow_provider_kbatch.spec.names import JobIdentity, selector_for
from airflow_provider_kbatch.spec.stage import StageSpec
from airflow_provider_kbatch.triggers.output import KbatchOutputTrigger
from tests.conftest import ClusterHandle, wait_until
from tests.helmchart import documents, render
from tests.ledger_writes import stage_written

pytestmark = pytest.mark.integration

SA = "kbatch-airflow"
RBAC_TEMPLATE = "templates/rbac.yaml"


def chart_rbac(namespace: str = "kbatch") -> str:
    """The chart's ServiceAccount, Role and RoleBinding for ``namespace`` (no Namespace object)."""
    return render({"namespace.name": namespace, "namespace.create": False}, show_only=RBAC_TEMPLATE)


# generated client method suffix -> (apiGroup, resource)
RESOURCES = {
    "namespaced_job": ("batch", "jobs"),
    "namespaced_pod": ("", "pods"),
    "namespaced_pod_log": ("", "pods/log"),
    "namespaced_config_map": ("", "configmaps"),
    "namespaced_persistent_volume_claim": ("", "persistentvolumeclaims"),
    "namespaced_event": ("", "events"),
    "namespaced_pod_disruption_budget": ("policy", "poddisruptionbudgets"),
}
VERBS = {
    "read": "get",
    "list": "list",
    "create": "create",
    "replace": "update",
    "patch": "patch",
    "delete": "delete",
}

Grant = tuple[str, str, str]  # (apiGroup, resource, verb)


def rbac_grant(method: str, kwargs: dict[str, Any]) -> Grant:
    """The RBAC permission a generated client call needs (``list`` + ``watch=True`` is ``watch``)."""
    action, suffix = method.split("_", 1)
    group, resource = RESOURCES[suffix]
    verb = "watch" if action == "list" and kwargs.get("watch") else VERBS[action]
    return group, resource, verb


def role_grants() -> set[Grant]:
    (role,) = [d for d in documents(chart_rbac()) if d["kind"] == "Role"]
    grants = set()
    for rule in role["rules"]:
        assert not rule.get("resourceNames"), "the test maps grants per resource"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert "*" not in (group, resource, verb), f"wildcard in the Role: {rule}"
                    grants.add((group, resource, verb))
    return grants


@dataclass
class Recorder:
    """Every request the hooks send, as (namespace, RBAC grant); non-resource calls by method."""

    requests: list[tuple[str | None, Grant]] = field(default_factory=list)
    non_resource: list[str] = field(default_factory=list)

    def record(self, call: calls.ApiCall) -> None:
        if call.api == "VersionApi":
            self.non_resource.append(call.method)
            return
        self.requests.append((call.kwargs.get("namespace"), rbac_grant(call.method, dict(call.kwargs))))

    def grants(self) -> set[Grant]:
        return {grant for _, grant in self.requests}


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()
    sync_send = KbatchHook._send
    async_invoke = AsyncKbatchHook._invoke

    def send(self: KbatchHook, call: calls.ApiCall) -> Any:
        rec.record(call)
        return sync_send(self, call)

    async def invoke(self: AsyncKbatchHook, api_client: Any, call: calls.ApiCall, **options: Any) -> Any:
        rec.record(call)
        return await async_invoke(self, api_client, call, **options)

    monkeypatch.setattr(KbatchHook, "_send", send)
    monkeypatch.setattr(AsyncKbatchHook, "_invoke", invoke)
    return rec


@dataclass
class ServiceAccountAccess:
    namespace: str
    kubeconfig: Path

    def hook(self) -> KbatchHook:
        return KbatchHook(config_file=str(self.kubeconfig))

    def async_hook(self) -> AsyncKbatchHook:
        return AsyncKbatchHook(config_file=str(self.kubeconfig))

    def client(self) -> Any:
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))


def service_account_kubeconfig(devcluster: ClusterHandle, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig at ``path`` holding only a TokenRequest token of ``namespace/account``."""
    token = (
        devcluster.core()
        .create_namespaced_service_account_token(account, namespace, {"spec": {"expirationSeconds": 3600}})
        .status.token
    )
    admin = yaml.safe_load(devcluster.kubeconfig.read_text())  # YAML or JSON
    (cluster,) = admin["clusters"]  # server and CA only: none of the admin's credentials
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [{"name": account, "user": {"token": token}}],
                "contexts": [
                    {
                        "name": account,
                        "context": {"cluster": cluster["name"], "user": account, "namespace": namespace},
                    }
                ],
                "current-context": account,
            }
        )
    )
    path.chmod(0o600)
    return path


@pytest.fixture
def sa_access(devcluster: ClusterHandle, namespace: str, tmp_path: Path) -> Iterator[ServiceAccountAccess]:
    subprocess.run(
        [*devcluster.kubectl(), "apply", "-n", namespace, "-f", "-"],
        input=chart_rbac(namespace),
        check=True,
        capture_output=True,
        text=True,
    )
    kubeconfig = service_account_kubeconfig(devcluster, namespace, SA, tmp_path / "kbatch-airflow.kubeconfig")
    return ServiceAccountAccess(namespace, kubeconfig)


def whoami(client: Any) -> str:
    from kubernetes import client as k8s

    review = k8s.AuthenticationV1Api(client).create_self_subject_review(
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    )
    return str(review.status.user_info.username)


def stage(command: list[str], completions: int = 2) -> StageSpec:
    return StageSpec(
        image="python:3.11-slim", command=command, completions=completions, ttl_seconds_after_finished=600
    )


PRINT_INDEX = ["python", "-c", "import os; print('hello from index', os.environ['KBATCH_INDEX'])"]


def test_the_role_allows_everything_the_provider_does_and_nothing_more(
    sa_access: ServiceAccountAccess, devcluster: ClusterHandle, recorder: Recorder
) -> None:
    ns = sa_access.namespace
    assert whoami(sa_access.client()) == f"system:serviceaccount:{ns}:{SA}"
    hook, ahook = sa_access.hook(), sa_access.async_hook()

    # --- submit: server version gate, manifest, adopt-or-create, 409 read back
    assert hook.server_version() >= (1, 30)
    identity = JobIdentity(dag_id="rbac", task_id="squares", run_id="manual__rbac", try_number=1)
    spec = stage(PRINT_INDEX)
    manifest = build_job_manifest(spec, identity, generation=1, namespace=ns)
    name = manifest["metadata"]["name"]
    assert hook.list_jobs(ns, selector_for(identity)) == []
    digest = spec_hash(spec)
    assert ledger.completed_for_resume(hook, ns, identity, digest) == IndexSet.of([])
    created, fresh = submit(hook, ns, manifest, digest)
    adopted, again = submit(hook, ns, manifest, digest)  # a 409, read back and adopted
    assert fresh and not again and adopted["metadata"]["uid"] == created["metadata"]["uid"]
    assert hook.get_job(ns, name)["metadata"]["uid"] == created["metadata"]["uid"]
    # disruption_budget=: the PDB owned by the Job, created, then found again on adoption (409 + get)
    pdb = ensure_budget(hook, ns, created, {"min_available": 1})
    assert (
        pdb is not None
        and ensure_budget(hook, ns, created, {"min_available": 1})["metadata"]["uid"]
        == pdb["metadata"]["uid"]
    )
    ledger.attempt_started(
        hook,
        ns,
        identity,
        job=name,
        uid=created["metadata"]["uid"],
        spec_hash=digest,
        index_map=IndexSet.full(2),
    )

    # --- the trigger's wait: watch the Job, watch its pods, stream every pod's log
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    log = logging.getLogger("test_rbac.wait")
    log.setLevel(logging.INFO)
    log.addHandler(Collect())

    async def wait() -> Any:
        return await asyncio.wait_for(
            wait_for_job(
                ahook, ns, name, settings=WaitSettings(progress_interval=1, log_drain_seconds=10), log=log
            ),
            timeout=120,
        )

    result = asyncio.run(wait())
    assert result.status == "finished" and result.outcome.succeeded, lines
    for index in (0, 1):
        assert any(f"[index {index}] hello from index {index}" in line for line in lines), lines

    # --- the outcome: pods, results, failure logs, the run ledger (ConfigMap compare-and-swap)
    job = hook.get_job(ns, name)
    xcom, failure = finish_stage(hook, ns, identity, job, completions=2, log=log)
    assert failure is None and xcom["completed_indexes"] == "0-1"
    pods = hook.list_pods(ns, f"batch.kubernetes.io/controller-uid={created['metadata']['uid']}")
    assert len(pods) == 2
    assert "hello from index" in hook.read_pod_log(ns, pods[0]["metadata"]["name"], "main", tail_lines=5)
    # the claim of a new Asset's first event: a create; a second run's wait that ran out takes
    # the claim over (get, replace)
    claim = {
        "dag_id": "rbac",
        "output": "o",
        "uri": f"kbatch://{ns}/rbac/o",
        "known": lambda: False,
        "log": log,
    }
    assert first_event.take_turn(hook, ns, holder="a", **claim) == "first"  # type: ignore[arg-type]
    assert first_event.take_turn(hook, ns, holder="b", window=0.3, poll=0.1, **claim) == "first"  # type: ignore[arg-type]

    async def async_reads() -> None:
        assert len(await ahook.list_pods(ns, f"batch.kubernetes.io/job-name={name}")) == 2
        assert "hello" in await ahook.read_pod_log(ns, pods[1]["metadata"]["name"], "main")
        assert (await ahook.get_job(ns, name))["metadata"]["name"] == name
        assert [j["metadata"]["name"] for j in await ahook.list_jobs(ns, selector_for(identity))] == [name]
        await ahook.list_events(ns, f"involvedObject.name={name}")
        data = await ahook.update_config_map_cas(
            ns, "kbatch-rbac-async", lambda d: {**d, "k": "v"}, labels={"kbatch.io/ledger": "true"}
        )
        assert data == {"k": "v"}
        assert (await ahook.get_config_map(ns, "kbatch-rbac-async"))["data"] == {"k": "v"}
        assert await ahook.server_version() >= (1, 30)

    asyncio.run(async_reads())
    assert hook.list_events(ns, f"involvedObject.name={name}") is not None
    # the ledger lookup by label (one ConfigMap per DAG run): the output sensor's poke ...
    ledgers = hook.list_config_maps(ns, "kbatch.io/ledger=true")
    assert {c["metadata"]["name"] for c in ledgers} >= {"kbatch-rbac-async"}
    # ... and its trigger, which watches the producer's ledgers until one records the output
    event = asyncio.run(output_trigger_event(sa_access, recorder, identity))
    assert event["status"] == "success" and event["output"]["manifest_digest"] == "sha256:rbac", event
    cm = hook.update_config_map_cas(ns, "kbatch-rbac-sync", lambda d: {**d, "a": "1"})
    cm = hook.update_config_map_cas(ns, "kbatch-rbac-sync", lambda d: {**d, "b": "2"})
    assert cm == {"a": "1", "b": "2"} and hook.get_config_map(ns, "kbatch-rbac-sync")["data"] == cm

    # --- lifecycle: suspend / resume (merge patch), kill while deferred (async, foreground)
    sleeper = build_job_manifest(
        stage(["python", "-c", "import time; time.sleep(300)"], completions=1),
        JobIdentity(dag_id="rbac", task_id="sleeper", run_id="manual__rbac"),
        generation=1,
        namespace=ns,
    )
    sleeper["spec"]["suspend"] = True
    sleeper_name = hook.create_job(ns, sleeper)["metadata"]["name"]
    assert hook.set_suspend(ns, sleeper_name, False)["spec"]["suspend"] is False
    assert hook.set_suspend(ns, sleeper_name, True)["spec"]["suspend"] is True

    async def kill() -> None:
        assert (await ahook.set_suspend(ns, sleeper_name, False))["spec"]["suspend"] is False
        assert await ahook.delete_job(ns, sleeper_name, propagation="Foreground") is True

    asyncio.run(kill())
    assert hook.delete_job(ns, name) is True

    # --- workspace claims (PVC hand-off)
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "kbatch-rbac-ws"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}},
    }
    hook.create_pvc(ns, claim)
    assert hook.get_pvc(ns, "kbatch-rbac-ws")["metadata"]["name"] == "kbatch-rbac-ws"
    assert hook.delete_pvc(ns, "kbatch-rbac-ws") is True

    # every request stayed in the namespace, and the Role grants exactly what was used
    assert {n for n, _ in recorder.requests} == {ns}
    assert "get_code" in recorder.non_resource  # /version: public-info-viewer, not the Role's
    used, granted = recorder.grants(), role_grants()
    assert used <= granted, f"the provider needs grants the Role lacks: {sorted(used - granted)}"
    assert granted <= used, f"the Role grants what the provider never uses: {sorted(granted - used)}"
    wait_until(lambda: not devcluster.batch().list_namespaced_job(ns).items, timeout=60, what="jobs deleted")


async def output_trigger_event(
    access: ServiceAccountAccess, recorder: Recorder, identity: JobIdentity
) -> Any:
    """Run KbatchOutputTrigger as the ServiceAccount; record the output once it watches."""
    trigger = KbatchOutputTrigger(
        external_dag_id=identity.dag_id,
        namespace=access.namespace,
        run_id=identity.run_id,
        output_name="published",
        config_file=str(access.kubeconfig),
    )
    events = trigger.run()
    first = asyncio.ensure_future(anext(events))
    watching = ("", "configmaps", "watch")
    for _ in range(600):
        if watching in recorder.grants() or first.done():
            break
        await asyncio.sleep(0.05)
    assert not first.done(), f"the trigger fired before any output was recorded: {first.result()}"
    output = {"name": "published", "manifest_digest": "sha256:rbac"}
    await access.async_hook().update_config_map_cas(
        access.namespace,
        rules.ledger_name(identity.dag_id, identity.run_id),
        partial(stage_written, task_id="publish", output=output, succeeded=True),
        labels=rules.ledger_labels(identity.dag_id, identity.run_id),
    )
    try:
        return (await asyncio.wait_for(first, timeout=60)).payload
    finally:
        await events.aclose()


def forbidden(call: Any) -> None:
    """``call`` must be refused by authorization (403), by either client."""
    from kubernetes.client.exceptions import ApiException

    try:
        call()
    except KbatchApiError as err:
        assert err.status == 403, err  # noqa: PT017 -- either client's error type may come
        return
    except ApiException as err:
        assert err.status == 403, err  # noqa: PT017
        return
    raise AssertionError("expected 403 Forbidden, the request was allowed")


def test_the_role_forbids_what_the_provider_must_not_do(
    sa_access: ServiceAccountAccess, devcluster: ClusterHandle
) -> None:
    from kubernetes import client as k8s

    ns = sa_access.namespace
    other = devcluster.namespace("rbac-other")
    devcluster.core().create_namespaced_secret(
        ns, {"metadata": {"name": "db"}, "stringData": {"password": "s3cret"}}
    )
    devcluster.core().create_namespaced_config_map(ns, {"metadata": {"name": "not-ours"}, "data": {"x": "1"}})
    hook = sa_access.hook()
    api = sa_access.client()
    core, rbac = k8s.CoreV1Api(api), k8s.RbacAuthorizationV1Api(api)
    pod = {
        "metadata": {"name": "bare"},
        "spec": {"containers": [{"name": "main", "image": "x", "command": ["true"]}]},
    }
    job = build_job_manifest(
        stage(PRINT_INDEX, completions=1),
        JobIdentity(dag_id="rbac", task_id="t", run_id="r"),
        generation=1,
        namespace=other,
    )

    forbidden(lambda: core.create_namespaced_pod(ns, pod))  # pods come from the Job controller only
    forbidden(lambda: core.read_namespaced_secret("db", ns))  # secrets are referenced, never read
    forbidden(lambda: core.list_namespaced_secret(ns))
    forbidden(lambda: hook.delete_config_map(ns, "not-ours"))  # the ledger is never deleted by us
    forbidden(lambda: hook.list_jobs(other))  # nothing outside the namespace
    forbidden(lambda: hook.create_job(other, job))
    forbidden(lambda: hook.get_config_map(other, "anything"))
    forbidden(lambda: core.list_namespace())
    forbidden(
        lambda: rbac.create_namespaced_role_binding(
            ns,
            {
                "metadata": {"name": "escalate"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
                "subjects": [{"kind": "ServiceAccount", "name": SA, "namespace": ns}],
            },
        )
    )
    forbidden(lambda: core.create_namespaced_service_account_token(SA, ns, {"spec": {}}))
    # subresources and verbs with no safe request to try: ask the authorizer itself
    authz = k8s.AuthorizationV1Api(api)
    for namespace, group, resource, subresource, verb in [
        (ns, "", "pods", "exec", "create"),
        (ns, "", "pods", "eviction", "create"),
        (ns, "", "pods", "", "delete"),
        (ns, "", "pods", "", "update"),
        (ns, "", "secrets", "", "watch"),
        (ns, "", "serviceaccounts", "", "list"),
        (ns, "batch", "cronjobs", "", "create"),
        (ns, "batch", "jobs", "status", "update"),
        (ns, "batch", "jobs", "", "deletecollection"),
        (ns, "", "configmaps", "", "delete"),
        (ns, "", "persistentvolumeclaims", "", "update"),
        (ns, "", "events", "", "create"),
        (other, "batch", "jobs", "", "get"),
        ("", "", "nodes", "", "list"),
        ("", "", "persistentvolumes", "", "create"),
    ]:
        review = authz.create_self_subject_access_review(
            {
                "spec": {
                    "resourceAttributes": {
                        "namespace": namespace,
                        "group": group,
                        "resource": resource,
                        "subresource": subresource,
                        "verb": verb,
                    }
                }
            }
        )
        assert not review.status.allowed, f"{verb} {resource}/{subresource} in {namespace!r} is allowed"
    # and the same review says yes to what the provider does (the reviews are not vacuous)
    review = authz.create_self_subject_access_review(
        {
            "spec": {
                "resourceAttributes": {"namespace": ns, "group": "batch", "resource": "jobs", "verb": "watch"}
            }
        }
    )
    assert review.status.allowed
