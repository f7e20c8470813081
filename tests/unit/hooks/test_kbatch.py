"""The hooks' executors: the request each method sends, the raw-JSON decoding, error mapping and
retries, the async watch / log wiring, and the connection extras."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from airflow_provider_kbatch.errors import JobDeleted, NotFound, PodLogNotReady
from airflow_provider_kbatch.hooks import kbatch as kbatch_module
from airflow_provider_kbatch.hooks.kbatch import AsyncKbatchHook, KbatchHook
from airflow_provider_kbatch.hooks.retry import RetryPolicy
from airflow_provider_kbatch.status import slim_pod
from tests.unit.hooks.fakes import Sleeps, bookmark, event, job, status_body, to_dict

POLICY = RetryPolicy(max_attempts=3, base_delay=1.0, max_delay=10.0, jitter=0.0)


# --- sync ----------------------------------------------------------------------------------------


class Urllib3Response:
    def __init__(self, body: Any) -> None:
        self.data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.released = False

    def release_conn(self) -> None:
        self.released = True


class SyncApi:
    """Stands in for a generated ``kubernetes.client`` API class: scripted answers per method."""

    def __init__(self, **answers: list[Any]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, method: str) -> Any:
        def call(**kwargs: Any) -> Any:
            self.calls.append((method, kwargs))
            answer = self.answers[method].pop(0)
            if isinstance(answer, BaseException):
                raise answer
            return answer

        return call


def sync_hook(**apis: SyncApi) -> tuple[KbatchHook, Sleeps]:
    sleeps = Sleeps()
    hook = KbatchHook("kubernetes_default", namespace="ns", retry_policy=POLICY, sleep=sleeps)
    hook.__dict__["_apis"] = apis  # no cluster: the generated API objects are replaced
    return hook, sleeps


def api_exception(status: int, reason: str, message: str) -> ApiException:
    exc = ApiException(status=status, reason=reason)
    exc.body = json.dumps(status_body(status, reason, message)).encode()
    exc.headers = {}
    return exc


def test_hook_metadata() -> None:
    for cls in (KbatchHook, AsyncKbatchHook):
        assert cls.conn_type == "kubernetes"
        assert cls.default_conn_name == "kubernetes_default"
        assert cls.conn_name_attr == "conn_id"
        assert cls.hook_name


def test_create_job_sends_the_manifest_and_returns_the_servers_json() -> None:
    server_job = job("kb-a-g1", "7")
    response = Urllib3Response(server_job)
    batch = SyncApi(create_namespaced_job=[response])
    hook, _ = sync_hook(BatchV1Api=batch)
    manifest = job("kb-a-g1", "")
    assert hook.create_job(None, manifest) == server_job
    assert batch.calls == [
        ("create_namespaced_job", {"namespace": "ns", "body": manifest, "_preload_content": False})
    ]
    assert response.released


def test_get_job_404_is_none_and_retries_transient_errors() -> None:
    batch = SyncApi(
        read_namespaced_job=[
            api_exception(503, "ServiceUnavailable", "etcd"),
            ConnectionResetError(),
            api_exception(404, "NotFound", 'jobs.batch "x" not found'),
        ]
    )
    hook, sleeps = sync_hook(BatchV1Api=batch)
    assert hook.get_job("other", "x") is None
    assert [kwargs["namespace"] for _, kwargs in batch.calls] == ["other"] * 3
    assert sleeps.delays == [1.0, 2.0]


def test_create_job_conflict_carries_the_existing_job() -> None:
    existing = job("kb-a-g1", "3", uid="first")
    batch = SyncApi(
        create_namespaced_job=[api_exception(409, "AlreadyExists", 'jobs.batch "kb-a-g1" already exists')],
        read_namespaced_job=[Urllib3Response(existing)],
    )
    hook, _ = sync_hook(BatchV1Api=batch)
    with pytest.raises(kbatch_module.calls.JobAlreadyExists) as raised:
        hook.create_job("ns", job("kb-a-g1", ""))
    assert raised.value.job["metadata"]["uid"] == "first"


def test_read_pod_log_returns_text() -> None:
    core = SyncApi(read_namespaced_pod_log=[Urllib3Response(b"line 1\nline 2\n")])
    hook, _ = sync_hook(CoreV1Api=core)
    assert hook.read_pod_log("ns", "p", "main", tail_lines=2, limit_bytes=1000) == "line 1\nline 2\n"
    assert core.calls[0][1] == {
        "name": "p",
        "namespace": "ns",
        "container": "main",
        "tail_lines": 2,
        "limit_bytes": 1000,
        "_preload_content": False,
    }


def test_server_version_and_test_connection() -> None:
    version = SyncApi(
        get_code=[
            Urllib3Response(
                to_dict(
                    client.VersionInfo(
                        major="1",
                        minor="36",
                        git_version="v1.36.3",
                        build_date="",
                        compiler="",
                        git_commit="",
                        git_tree_state="",
                        go_version="",
                        platform="",
                    )
                )
            )
        ]
    )
    hook, _ = sync_hook(VersionApi=version)
    assert hook.test_connection() == (True, "Connected to Kubernetes 1.36")


def test_namespace_falls_back_to_the_connection_then_default() -> None:
    class CncfHook:
        def __init__(self, namespace: str | None) -> None:
            self.namespace = namespace

        def get_namespace(self) -> str | None:
            return self.namespace

    hook = KbatchHook()
    hook.__dict__["cncf_hook"] = CncfHook("team")
    assert hook.get_namespace() == "team"
    hook = KbatchHook()
    hook.__dict__["cncf_hook"] = CncfHook(None)
    assert hook.get_namespace() == "default"
    assert KbatchHook(namespace="mine").get_namespace() == "mine"


def test_constructor_does_no_io() -> None:
    hook = KbatchHook("nonexistent_conn", namespace="ns", config_file="/nowhere")
    assert "cncf_hook" not in hook.__dict__ and "api_client" not in hook.__dict__


# --- async ---------------------------------------------------------------------------------------


class Content:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def iter_any(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


class AiohttpResponse:
    def __init__(self, status: int = 200, body: Any = b"", chunks: list[bytes] | None = None) -> None:
        self.status = status
        self.reason = "OK" if status < 400 else "Error"
        self.headers: dict[str, str] = {}
        self.body = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.content = Content(chunks if chunks is not None else [self.body])
        self.released = self.closed = False

    async def read(self) -> bytes:
        return self.body

    def release(self) -> None:
        self.released = True

    def close(self) -> None:
        self.closed = True


def lines(*events: dict[str, Any]) -> list[bytes]:
    """Events as a watch body, cut into awkward chunks (mid-line)."""
    body = b"".join(json.dumps(e).encode() + b"\n" for e in events)
    return [body[i : i + 7] for i in range(0, len(body), 7)]


class AsyncApis:
    """Replaces ``kubernetes_asyncio.client.<Api>`` classes: scripted responses per method."""

    def __init__(self, **answers: list[Any]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def factory(self, api_client: Any) -> Any:
        apis = self

        class Api:
            def __getattr__(self, method: str) -> Any:
                async def call(**kwargs: Any) -> Any:
                    apis.calls.append((method, kwargs))
                    answer = apis.answers[method].pop(0)
                    if isinstance(answer, BaseException):
                        raise answer
                    return answer

                return call

        return Api()


@pytest.fixture
def async_apis(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(
        share_watches: bool = False, **answers: list[Any]
    ) -> tuple[AsyncKbatchHook, AsyncApis, Sleeps]:
        import kubernetes_asyncio.client

        apis = AsyncApis(**answers)
        for name in ("BatchV1Api", "CoreV1Api", "VersionApi"):
            monkeypatch.setattr(kubernetes_asyncio.client, name, apis.factory)
        sleeps = Sleeps()
        hook = AsyncKbatchHook(
            namespace="ns",
            retry_policy=POLICY,
            watch_retry_policy=POLICY,
            sleep=sleeps.asleep,
            share_watches=share_watches,
        )
        hook._pinned = object()  # an "open" API client: no configuration loading
        return hook, apis, sleeps

    return install


def job_list(rv: str, *jobs: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "JobList", "metadata": {"resourceVersion": rv}, "items": list(jobs)}


async def test_watch_job_yields_current_then_changes_and_raises_on_delete(async_apis: Any) -> None:
    watch_body = lines(
        event("MODIFIED", job("j", "6", active=1)), bookmark("9"), event("DELETED", job("j", "10"))
    )
    response = AiohttpResponse(chunks=watch_body)
    hook, apis, _ = async_apis(
        list_namespaced_job=[AiohttpResponse(body=job_list("5", job("j", "4"))), response],
    )
    seen = []
    with pytest.raises(JobDeleted) as raised:  # noqa: PT012 -- the watch is the statement
        async for current in hook.watch_job(None, "j", timeout_seconds=60):
            seen.append(current["metadata"]["resourceVersion"])
    assert seen == ["4", "6"]
    assert raised.value.last is not None and raised.value.last["metadata"]["resourceVersion"] == "6"
    (_, listing), (_, watching) = apis.calls
    assert listing == {
        "namespace": "ns",
        "field_selector": "metadata.name=j",
        "limit": 500,
        "_preload_content": False,
    }
    assert watching == {
        "namespace": "ns",
        "field_selector": "metadata.name=j",
        "watch": True,
        "allow_watch_bookmarks": True,
        "resource_version": "5",
        "timeout_seconds": 60,
        "_preload_content": False,
        "_request_timeout": 90,
    }
    assert response.closed


async def test_watch_job_missing_or_replaced_is_deleted(async_apis: Any) -> None:
    hook, _, _ = async_apis(list_namespaced_job=[AiohttpResponse(body=job_list("5"))])
    with pytest.raises(JobDeleted):
        async for _ in hook.watch_job("ns", "j"):
            pass
    hook, _, _ = async_apis(
        list_namespaced_job=[AiohttpResponse(body=job_list("5", job("j", "4", uid="new")))]
    )
    with pytest.raises(JobDeleted):
        async for _ in hook.watch_job("ns", "j", uid="old"):
            pass


async def test_shared_watch_job_lists_the_namespace_once_and_reads_a_job_it_does_not_know(
    async_apis: Any,
) -> None:
    """Two waits share one list+watch of the namespace's Jobs (no field selector); a Job the list
    did not have is read directly; one that does not exist at all is deleted."""
    watch_body = lines(
        event("MODIFIED", job("a", "7", uid="ua", succeeded=1)), event("MODIFIED", job("b", "8", uid="ub"))
    )
    hook, apis, _ = async_apis(
        share_watches=True,
        list_namespaced_job=[
            AiohttpResponse(body=job_list("5", job("a", "4", uid="ua"))),
            AiohttpResponse(chunks=watch_body),
        ],
        read_namespaced_job=[AiohttpResponse(body=job("b", "6", uid="ub"))],
    )

    async def follow(name: str, last: str) -> list[str]:
        seen = []
        async for current in hook.watch_job("ns", name):
            seen.append(current["metadata"]["resourceVersion"])
            if seen[-1] == last:
                break
        return seen

    a, b = await asyncio.gather(follow("a", "7"), follow("b", "8"))
    assert a == ["4", "7"]
    assert b in (["6", "8"], ["8"])  # the direct read is dropped when the watch was already newer
    listing, watching = [kw for method, kw in apis.calls if method == "list_namespaced_job"][:2]
    assert "field_selector" not in listing and "watch" not in listing
    assert watching["watch"] is True and watching["resource_version"] == "5"
    assert [method for method, _ in apis.calls].count("read_namespaced_job") <= 1  # only b, if at all

    hook, _, _ = async_apis(
        share_watches=True,
        list_namespaced_job=[AiohttpResponse(body=job_list("5"))],
        read_namespaced_job=[AiohttpResponse(status=404, body=status_body(404, "NotFound", "gone"))],
    )
    with pytest.raises(JobDeleted):
        async for _ in hook.watch_job("ns", "missing"):
            pass


async def test_watch_reconnects_after_a_gone_http_status(async_apis: Any) -> None:
    hook, apis, sleeps = async_apis(
        list_namespaced_job=[
            AiohttpResponse(body=job_list("5", job("j", "4"))),
            AiohttpResponse(status=410, body=status_body(410, "Expired", "too old resource version")),
            AiohttpResponse(body=job_list("20", job("j", "19", succeeded=1))),
            AiohttpResponse(chunks=lines(event("MODIFIED", job("j", "21")))),
        ],
    )
    seen = []
    async for current in hook.watch_job("ns", "j"):
        seen.append(current["metadata"]["resourceVersion"])
        if len(seen) == 3:
            break
    assert seen == ["4", "19", "21"]
    assert [kw.get("resource_version") for _, kw in apis.calls] == [None, "5", None, "20"]
    assert sleeps.delays == []


async def test_watch_pods_reports_event_types(async_apis: Any) -> None:
    pod = to_dict(client.V1Pod(metadata=client.V1ObjectMeta(name="p0", uid="u0", resource_version="3")))
    hook, apis, _ = async_apis(
        list_namespaced_pod=[
            AiohttpResponse(body={"kind": "PodList", "metadata": {"resourceVersion": "3"}, "items": [pod]}),
            AiohttpResponse(
                chunks=lines(
                    event("DELETED", {**pod, "metadata": {**pod["metadata"], "resourceVersion": "4"}})
                )
            ),
        ]
    )
    seen = []
    async for kind, obj in hook.watch_pods("ns", "controller-uid=abc"):
        seen.append((kind, obj["metadata"]["name"]))
        if len(seen) == 2:
            break
    assert seen == [("ADDED", "p0"), ("DELETED", "p0")]
    assert apis.calls[1][1]["label_selector"] == "controller-uid=abc"


async def test_watch_pods_keeps_and_reports_pods_slimmed(async_apis: Any) -> None:
    """A Job of 100,000 indexes: the pod watch (and the shared feed behind it) holds every pod of
    the namespace's Jobs, so it keeps only what the waits read (``status.slim_pod``)."""
    full = to_dict(
        client.V1Pod(
            metadata=client.V1ObjectMeta(
                name="p0",
                uid="u0",
                resource_version="3",
                managed_fields=[client.V1ManagedFieldsEntry(manager="kubelet")],
            ),
            spec=client.V1PodSpec(
                containers=[
                    client.V1Container(
                        name="main", image="img", env=[client.V1EnvVar(name="A", value="x" * 500)]
                    )
                ]
            ),
            status=client.V1PodStatus(phase="Running"),
        )
    )
    hook, _, _ = async_apis(
        list_namespaced_pod=[
            AiohttpResponse(body={"kind": "PodList", "metadata": {"resourceVersion": "3"}, "items": [full]}),
            AiohttpResponse(
                chunks=lines(
                    event("MODIFIED", {**full, "metadata": {**full["metadata"], "resourceVersion": "4"}})
                )
            ),
        ]
    )
    seen = []
    async for kind, obj in hook.watch_pods("ns", "controller-uid=abc"):
        seen.append((kind, obj))
        if len(seen) == 2:
            break
    assert [(kind, obj["metadata"]["resourceVersion"]) for kind, obj in seen] == [
        ("ADDED", "3"),
        ("MODIFIED", "4"),
    ]
    for version, (_, obj) in zip(("3", "4"), seen, strict=True):
        assert obj == slim_pod({**full, "metadata": {**full["metadata"], "resourceVersion": version}})
        assert "managedFields" not in obj["metadata"]
        assert obj["spec"]["containers"] == [{"name": "main", "image": "img"}]  # no env
        assert obj["status"]["phase"] == "Running"


async def test_followed_logs_share_one_client_of_their_own(async_apis: Any) -> None:
    """1,000 triggers ending at once: every stream used to build its own client (kubeconfig,
    SSL context), the top of the loop's profile. The followed logs of a loop lease one client per
    cluster, apart from the one the short requests lease."""
    hook, _, _ = async_apis(
        read_namespaced_pod_log=[AiohttpResponse(chunks=[f"line {i}\n".encode()]) for i in range(3)],
        read_namespaced_job=[AiohttpResponse(body=job("j", "4"))],
    )
    hook._pinned = None
    opened: list[object] = []

    @contextlib.asynccontextmanager
    async def client() -> AsyncIterator[object]:
        opened.append(made := object())
        yield made

    async def open_client() -> Any:
        return client()

    hook._open_client = open_client  # type: ignore[method-assign]

    async def follow(pod: str) -> list[str]:
        return [line async for line in hook.stream_pod_log("ns", pod, "main")]

    assert await asyncio.gather(*(follow(f"p{i}") for i in range(3))) == [["line 0"], ["line 1"], ["line 2"]]
    assert len(opened) == 1  # three streams, one client
    assert (await hook.get_job("ns", "j"))["metadata"]["name"] == "j"
    assert len(opened) == 2  # the short requests' client is another


async def test_stream_pod_log_lines_and_not_found(async_apis: Any) -> None:
    response = AiohttpResponse(chunks=[b"first li", b"ne\nsecond\nthi", b"rd"])
    hook, apis, _ = async_apis(
        read_namespaced_pod_log=[
            response,
            AiohttpResponse(status=404, body=status_body(404, "NotFound", 'pods "p" not found')),
            AiohttpResponse(
                status=400, body=status_body(400, "BadRequest", 'container "main" is waiting to start')
            ),
        ]
    )
    assert [line async for line in hook.stream_pod_log("ns", "p", "main", since_seconds=5)] == [
        "first line",
        "second",
        "third",
    ]
    assert response.closed
    assert apis.calls[0][1] == {
        "name": "p",
        "namespace": "ns",
        "container": "main",
        "since_seconds": 5,
        "follow": True,
        "_preload_content": False,
        "_request_timeout": (30, None),
    }
    assert [line async for line in hook.stream_pod_log("ns", "p", "main")] == []
    with pytest.raises(PodLogNotReady, match="waiting to start"):
        async for _ in hook.stream_pod_log("ns", "p", "main"):
            pass


async def test_async_errors_map_and_retry(async_apis: Any) -> None:
    hook, _, sleeps = async_apis(
        read_namespaced_config_map=[
            AiohttpResponse(status=429, body=status_body(429, "TooManyRequests", "slow down")),
            AiohttpResponse(status=404, body=status_body(404, "NotFound", "not found")),
        ],
        delete_namespaced_job=[AiohttpResponse(status=404, body=status_body(404, "NotFound", "gone"))],
    )
    assert await hook.get_config_map("ns", "ledger") is None
    assert sleeps.delays == [1.0]
    assert await hook.delete_job("ns", "j") is False


async def test_async_cas_uses_the_shared_procedure(async_apis: Any) -> None:
    cm = to_dict(
        client.V1ConfigMap(
            api_version="v1",
            kind="ConfigMap",
            metadata=client.V1ObjectMeta(name="ledger", namespace="ns", resource_version="7"),
            data={"stage.a": "1"},
        )
    )
    hook, apis, _ = async_apis(
        read_namespaced_config_map=[AiohttpResponse(body=cm)],
        replace_namespaced_config_map=[
            AiohttpResponse(body={**cm, "data": {"stage.a": "1", "stage.b": "2"}})
        ],
    )

    def add_b(data: dict[str, str]) -> dict[str, str]:
        return {**data, "stage.b": "2"}

    assert await hook.update_config_map_cas("ns", "ledger", add_b) == {"stage.a": "1", "stage.b": "2"}
    method, kwargs = apis.calls[1]
    assert method == "replace_namespaced_config_map"
    assert kwargs["body"]["metadata"]["resourceVersion"] == "7"
    assert kwargs["body"]["data"] == {"stage.a": "1", "stage.b": "2"}


async def test_async_hook_passes_only_allow_listed_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.cncf.kubernetes.hooks import kubernetes as cncf

    async def extras(self: Any) -> dict[str, Any]:
        if self._extras is None:
            self._extras = {
                "kube_config_path": "/from/connection",
                "extra__kubernetes__namespace": "team",
                "in_cluster": False,
                "xcom_sidecar_container_image": "not ours",
                "something_secret": "never forwarded",
            }
        return self._extras

    monkeypatch.setattr(cncf.AsyncKubernetesHook, "get_conn_extras", extras)
    hook = AsyncKbatchHook("my_k8s", config_file="/explicit", cluster_context="ctx")
    cncf_hook = await hook.cncf_hook()
    assert await cncf_hook.get_conn_extras() == {
        "kube_config_path": "/explicit",
        "namespace": "team",
        "in_cluster": False,
    }
    assert (cncf_hook.conn_id, cncf_hook.cluster_context) == ("my_k8s", "ctx")
    assert await hook.get_namespace() == "team"


def test_sync_and_async_hooks_share_the_procedures() -> None:
    # Both hooks are thin executors: neither defines request logic of its own.
    assert not hasattr(KbatchHook, "watch_job")
    for name in (
        "create_job",
        "get_job",
        "list_jobs",
        "delete_job",
        "set_suspend",
        "list_pods",
        "read_pod_log",
    ):
        assert callable(getattr(KbatchHook, name)) and callable(getattr(AsyncKbatchHook, name))


async def test_not_found_propagates_from_read_pod_log(async_apis: Any) -> None:
    hook, _, _ = async_apis(
        read_namespaced_pod_log=[AiohttpResponse(status=404, body=status_body(404, "NotFound", "x"))]
    )
    with pytest.raises(NotFound):
        await hook.read_pod_log("ns", "p")
