"""Scale mode: a stage on the session cluster's simulated node (devcluster/processnode/simulated.py).

The real API server, scheduler and Job controller run a 150-index Job whose pods complete without
a process: 37 indexes fail with exit code 3 on the first try (a ``FailIndex`` podFailurePolicy
rule: failed at once), index 1 fails once with exit code 7 and succeeds on its second pod
(``backoffLimitPerIndex: 1``). The outcome is gathered a page of 25 pods at a time (the real
API server's ``limit``/``continue``): every result is read, the failure message names the failed
indexes. A second try runs only the 37 (a resumed Job whose pods learn their logical index from
the index map) and then every index has its result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_kbatch.devcluster.processnode.simulated import pod_request
from airflow_provider_kbatch.engine import ledger
from airflow_provider_kbatch.engine.outcome import finish_stage
from airflow_provider_kbatch.engine.results import read_results
from airflow_provider_kbatch.engine.submission import submit
from airflow_provider_kbatch.hooks.kbatch import KbatchHook
from airflow_provider_kbatch.spec.intervals import IndexSet
from airflow_provider_kbatch.spec.manifest import build_job_manifest, spec_hash
from airflow_provider_kbatch.spec.names import CONTROLLER_UID_LABEL, JobIdentity
from airflow_provider_kbatch.spec.stage import StageSpec
from airflow_provider_kbatch.status import job_outcome
from tests.conftest import ClusterHandle, wait_until

pytestmark = pytest.mark.integration
LOG = logging.getLogger(__name__)
N = 150
FAILING = sorted({(i * N) // 37 + 2 for i in range(37)})
PAGE = 25


class PagedHook(KbatchHook):
    """The real hook with small pages, counting the page requests."""

    pages = 0

    def pod_pages(
        self, namespace: str | None, label_selector: str | None = None, *, page_size: int = PAGE
    ) -> Iterator[list[dict[str, Any]]]:  # type: ignore[override]
        for page in super().pod_pages(namespace, label_selector, page_size=PAGE):
            self.pages += 1
            yield page


def run(
    hook: KbatchHook,
    namespace: str,
    spec: StageSpec,
    identity: JobIdentity,
    index_map: IndexSet,
    generation: int,
) -> dict[str, Any]:
    digest = spec_hash(spec)
    manifest = build_job_manifest(
        spec, identity, generation=generation, namespace=namespace, index_map=index_map
    )
    job, created = submit(hook, namespace, manifest, digest)
    assert created
    name, uid = job["metadata"]["name"], job["metadata"]["uid"]
    ledger.attempt_started(
        hook, namespace, identity, job=name, uid=uid, spec_hash=digest, index_map=index_map
    )
    return wait_until(
        lambda: (j := hook.get_job(namespace, name)) and job_outcome(j).finished and j,
        timeout=300, interval=0.5, what=f"job {name} finished",
    )  # fmt: skip


@pytest.mark.timeout(600)  # about 20 s alone; a loaded machine is much slower
def test_a_150_index_stage_on_the_simulated_node_fails_37_then_resumes_only_those(
    devcluster: ClusterHandle, namespace: str, record_property: Any
) -> None:
    behaviour = {
        "message": '{"i": {index}}',
        "failures": [
            {
                "indexes": ",".join(map(str, FAILING)),
                "generations": "1",
                "exitCode": 3,
                "message": "bad {index}",
            },
            {"indexes": "1", "below_failures": 1, "exitCode": 7},
        ],
    }
    request = pod_request(behaviour)
    spec = StageSpec(
        image="simulated", command=("true",), completions=N, parallelism=N,
        backoff_limit_per_index=1, max_failed_indexes=N,
        fail_on_exit_codes=(3,), fail_on_exit_codes_action="FailIndex",
        node_selector=request["node_selector"], tolerations=tuple(request["tolerations"]),
        annotations=request["annotations"], ttl_seconds_after_finished=3600,
    )  # fmt: skip
    hook = PagedHook()
    first = JobIdentity(dag_id="scale", task_id="wide", run_id="manual__sim", try_number=1)

    started = time.monotonic()
    done = run(hook, namespace, spec, first, IndexSet.full(N), 1)
    first_seconds = time.monotonic() - started
    outcome = job_outcome(done)
    assert not outcome.succeeded and outcome.failed == IndexSet.of(FAILING), done["status"]
    assert outcome.completed == IndexSet.full(N) - IndexSet.of(FAILING)

    # honest pod statuses: every pod on the simulated node, terminated with its exit code
    pods = (
        devcluster.core()
        .list_namespaced_pod(namespace, label_selector=f"{CONTROLLER_UID_LABEL}={done['metadata']['uid']}")
        .items
    )
    assert {p.spec.node_name for p in pods} == {"kbatch-sim-0"}
    by_index: dict[int, list[Any]] = {}
    for p in pods:
        by_index.setdefault(
            int(p.metadata.annotations["batch.kubernetes.io/job-completion-index"]), []
        ).append(p)
    bad = by_index[FAILING[0]][0]
    term = bad.status.container_statuses[0].state.terminated
    assert (bad.status.phase, term.exit_code, term.reason, term.message) == (
        "Failed",
        3,
        "Error",
        f"bad {FAILING[0]}",
    )
    assert term.started_at is not None and term.finished_at >= term.started_at
    assert len(by_index[FAILING[0]]) == 1  # FailIndex: not retried
    retried = sorted(by_index[1], key=lambda p: p.metadata.creation_timestamp)
    assert [p.status.phase for p in retried] == ["Failed", "Succeeded"]  # backoffLimitPerIndex
    assert retried[0].status.container_statuses[0].state.terminated.exit_code == 7

    hook.pages = 0
    result, failure = finish_stage(hook, namespace, first, done, completions=N, log=LOG)
    assert hook.pages == (len(pods) + PAGE - 1) // PAGE >= 7  # paginated: every page read, once
    assert failure is not None and f"{FAILING[0]}" in failure.message
    assert result["results_total"] == N - len(FAILING)
    every = read_results(hook, **result["results_ref"])
    assert every == {i: {"i": i} for i in range(N) if i not in FAILING}

    # the Airflow retry runs only the 37 (generation 2): their logical indexes come from the map
    retry = JobIdentity(dag_id="scale", task_id="wide", run_id="manual__sim", try_number=2)
    started = time.monotonic()
    again = run(hook, namespace, spec, retry, IndexSet.of(FAILING), 2)
    resume_seconds = time.monotonic() - started
    assert job_outcome(again).succeeded and again["spec"]["completions"] == len(FAILING)
    result, failure = finish_stage(hook, namespace, retry, again, completions=N, log=LOG)
    assert failure is None and result["completed_indexes"] == f"0-{N - 1}"
    assert read_results(hook, **result["results_ref"]) == {i: {"i": i} for i in range(N)}
    record_property("simulated_150_first_try_s", round(first_seconds, 1))
    record_property("simulated_37_resume_s", round(resume_seconds, 1))
    for job in (done, again):
        hook.delete_job(namespace, job["metadata"]["name"], propagation="Background")


def test_a_followed_log_of_a_simulated_pod_stays_open_until_it_ends(
    devcluster: ClusterHandle, namespace: str
) -> None:
    """As a kubelet's: a waiting trigger's log stream is one long request per pod, not a request
    that ends at once and is opened again (what the trigger-loop benchmark counts)."""
    request = pod_request({"seconds": 4, "exitCode": 0})
    core = devcluster.core()
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "followed", "annotations": request["annotations"]},
            "spec": {
                "restartPolicy": "Never",
                "nodeSelector": request["node_selector"],
                "tolerations": request["tolerations"],
                "containers": [{"name": "main", "image": "simulated", "command": ["true"]}],
            },
        },
    )
    wait_until(
        lambda: core.read_namespaced_pod("followed", namespace).status.phase == "Running",
        timeout=60, interval=0.2, what="the simulated pod running",
    )  # fmt: skip
    started = time.monotonic()
    text = core.read_namespaced_pod_log("followed", namespace, follow=True, _preload_content=False).data
    held = time.monotonic() - started
    assert text == b""
    assert core.read_namespaced_pod("followed", namespace).status.phase == "Succeeded"
    assert held > 1.0, held  # it ended with the pod, about 4 s after it started running
    started = time.monotonic()
    assert (
        core.read_namespaced_pod_log("followed", namespace, follow=True, _preload_content=False).data == b""
    )
    assert time.monotonic() - started < 2.0  # an ended pod's followed log ends at once
