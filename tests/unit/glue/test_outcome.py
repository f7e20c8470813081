"""finish_stage: the task's result from the Job as it ended (in-memory hook, real ledger rules).

The hook keeps ConfigMaps as the API server does (labels, annotations, ownerReferences,
resourceVersion, the 1 MiB object limit as a 422), so the ledger writes, the results ConfigMaps
and ``read_results`` run unchanged against it.
"""

from __future__ import annotations

import copy
import json
import logging
from typing import Any
from unittest.mock import ANY

import pytest

from airflow_provider_kbatch.engine import ledger
from airflow_provider_kbatch.engine import results as stored_results
from airflow_provider_kbatch.engine.outcome import finish_stage
from airflow_provider_kbatch.engine.results import read_results
from airflow_provider_kbatch.errors import KbatchApiError
from airflow_provider_kbatch.pipeline import records
from airflow_provider_kbatch.pipeline import results as result_rules
from airflow_provider_kbatch.spec.intervals import IndexSet
from airflow_provider_kbatch.spec.manifest import build_job_manifest, spec_hash
from airflow_provider_kbatch.spec.names import JobIdentity
from airflow_provider_kbatch.spec.stage import StageSpec

ID = JobIdentity(dag_id="d", task_id="t", run_id="r1", try_number=1)
NS = "ns"
LOG = logging.getLogger("t")
OBJECT_LIMIT = 1024 * 1024


def _matches(labels: dict[str, str], selector: str) -> bool:
    return all(labels.get(k) == v for k, v in (part.split("=", 1) for part in selector.split(",")))


class Hook:
    """Pods as listed; ConfigMaps as the API server keeps them; ``calls`` records every verb."""

    def __init__(self, pods: list[dict[str, Any]] | None = None) -> None:
        self.pods = pods or []
        self.config_maps: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.version = 0

    # the ledger ConfigMap as written by engine.ledger (CAS semantics are tested in hooks/)
    @property
    def data(self) -> dict[str, str]:
        return self.config_maps[records.ledger_name(ID.dag_id, ID.run_id)]["data"]

    def _store(self, body: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(body).encode())
        if size > OBJECT_LIMIT:
            raise KbatchApiError(422, "RequestEntityTooLarge", f"{size} bytes is over the object limit")
        self.version += 1
        stored = copy.deepcopy(body)
        meta = stored["metadata"]
        meta.setdefault("uid", f"uid-cm-{self.version}")
        meta.setdefault("creationTimestamp", f"2026-01-01T00:00:{self.version:02d}Z")
        meta["resourceVersion"] = str(self.version)
        self.config_maps[meta["name"]] = stored
        return copy.deepcopy(stored)

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        self.calls.append(("list_pods", selector))
        return self.pods

    def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("get_config_map", name))
        return copy.deepcopy(self.config_maps.get(name))

    def list_config_maps(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        self.calls.append(("list_config_maps", label_selector))
        return [
            copy.deepcopy(c)
            for c in self.config_maps.values()
            if _matches(c["metadata"].get("labels") or {}, label_selector)
        ]

    def update_config_map_cas(self, namespace, name, mutate, *, labels=None, annotations=None, check=None):
        self.calls.append(("update_config_map_cas", name))
        current = self.config_maps.get(name)
        if current is not None and check is not None:
            check(copy.deepcopy(current))
        data = mutate(dict((current or {}).get("data") or {}))
        meta = copy.deepcopy((current or {}).get("metadata") or {"name": name})
        meta["labels"] = {**(labels or {}), **(meta.get("labels") or {})}
        meta["annotations"] = {**(annotations or {}), **(meta.get("annotations") or {})}
        return dict(self._store({"metadata": meta, "data": data})["data"])

    def put_config_map(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("put_config_map", body["metadata"]["name"]))
        existing = self.config_maps.get(body["metadata"]["name"])
        if existing is not None and existing["data"] == body["data"]:
            return copy.deepcopy(existing)
        return self._store(body)

    def read_pod_log(self, *args: Any, **kwargs: Any) -> str:
        return "boom\n"

    def verbs(self) -> list[str]:
        return [verb for verb, _ in self.calls]


def _job(mode: str, completions: int, conditions: list[tuple[str, str]], **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "j", "uid": "u1", "annotations": {}},
        "spec": {"completions": completions, "completionMode": mode},
        "status": {
            "conditions": [{"type": t, "status": "True", "reason": r} for t, r in conditions],
            **status,
        },
    }


def _started(hook: Hook, completions: int) -> None:
    ledger.attempt_started(
        hook, "ns", ID, job="j", uid="u1", spec_hash="h", index_map=IndexSet.full(completions)
    )


def test_a_complete_nonindexed_job_completed_every_index():
    hook = Hook([])
    _started(hook, 3)
    job = _job("NonIndexed", 3, [("Complete", "CompletionsReached")], succeeded=3)
    result, failure = finish_stage(hook, "ns", ID, job, completions=3, log=LOG)
    assert failure is None
    assert result["completed_indexes"] == "0-2" and result["summary"].startswith("3/3")


def test_an_indexed_job_reports_its_completed_indexes_only():
    hook = Hook([])
    _started(hook, 4)
    job = _job("Indexed", 4, [("Complete", "SuccessPolicy")], completedIndexes="0,2")
    result, failure = finish_stage(hook, "ns", ID, job, completions=4, log=LOG)
    assert failure is None and result["completed_indexes"] == "0,2"


# --------------------------------------------------------------------------- every index's result

STAGE = StageSpec(image="python:3.12-slim", command=("python", "-m", "work"), completions=1000)


def _real_job(generation: int, index_map: IndexSet, uid: str) -> dict[str, Any]:
    """The Job as the API server returns it after it completed: the manifest the operator built."""
    job = build_job_manifest(STAGE, ID, generation=generation, namespace=NS, index_map=index_map)
    job["metadata"].update(uid=uid, resourceVersion="7", creationTimestamp="2026-01-01T00:00:00Z")
    job["metadata"]["annotations"]["kbatch.io/generation"] = str(generation)
    job["status"] = {
        "conditions": [{"type": "Complete", "status": "True", "reason": "CompletionsReached"}],
        "completedIndexes": f"0-{len(index_map) - 1}",
        "succeeded": len(index_map),
    }
    return job


def _pod(job: dict[str, Any], local: int, result: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"{job['metadata']['name']}-{local}-abcde",
            "creationTimestamp": "2026-01-01T00:00:01Z",
            "labels": {
                "batch.kubernetes.io/job-completion-index": str(local),
                "batch.kubernetes.io/controller-uid": job["metadata"]["uid"],
            },
        },
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [
                {
                    "name": "main",
                    "state": {
                        "terminated": {"exitCode": 0, "reason": "Completed", "message": json.dumps(result)}
                    },
                }
            ],
        },
    }


def _result_of(index: int, size: int = 2000) -> dict[str, Any]:
    return {"index": index, "rows": index * 3, "note": "r" * (size - 40)}


def _run_attempt(hook: Hook, generation: int, index_map: IndexSet, *, try_number: int = 1) -> dict[str, Any]:
    job = _real_job(generation, index_map, f"uid-job-{generation}")
    identity = JobIdentity(ID.dag_id, ID.task_id, ID.run_id, ID.map_index, try_number)
    ledger.attempt_started(
        hook, NS, identity, job=job["metadata"]["name"], uid=job["metadata"]["uid"],
        spec_hash=spec_hash(STAGE), index_map=index_map,
    )  # fmt: skip
    hook.pods = [_pod(job, local, _result_of(index)) for local, index in enumerate(index_map)]
    result, failure = finish_stage(hook, NS, identity, job, completions=1000, log=LOG)
    assert failure is None
    return result


def test_1000_results_of_2kb_xcom_inline_within_budget_and_every_one_readable():
    hook = Hook()
    result = _run_attempt(hook, 1, IndexSet.full(1000))
    inline = result["results"]
    assert len(json.dumps(inline, separators=(",", ":")).encode()) <= result_rules.INLINE_BUDGET_BYTES
    assert result["results_total"] == 1000 and result["results_inline"] == len(inline) > 0
    assert list(inline) == [str(i) for i in range(len(inline))]  # the lowest indexes, in order
    assert inline["0"] == _result_of(0)
    assert result["results_ref"] == {
        "namespace": NS,
        "dag_id": "d",
        "run_id": "r1",
        "task_id": "t",
        "map_index": -1,
    }
    every = read_results(hook, **result["results_ref"])
    assert every == {i: _result_of(i) for i in range(1000)}
    # kept in results ConfigMaps under the object limit, owned by the ledger, not in the ledger
    ledger_cm = hook.config_maps[records.ledger_name("d", "r1")]
    stored = [c for c in hook.config_maps.values() if c["metadata"]["name"].startswith("kbatch-results-")]
    assert len(stored) == 3 and all(len(json.dumps(c).encode()) < 900 * 1024 for c in stored)
    for cm in stored:
        assert cm["metadata"]["ownerReferences"] == [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": ledger_cm["metadata"]["name"],
             "uid": ledger_cm["metadata"]["uid"]}
        ]  # fmt: skip
        assert cm["metadata"]["annotations"]["kbatch.io/job"] == result["name"]
    assert records.ledger_size(ledger_cm["data"]) < records.RECORD_BUDGET_BYTES
    assert records.read_stage(ledger_cm["data"], records.stage_key("t")).latest_attempt.results == 1000  # type: ignore[union-attr]


def test_a_resumed_attempt_returns_every_index_across_attempts():
    hook = Hook()
    first = _real_job(1, IndexSet.full(1000), "uid-job-1")
    ledger.attempt_started(
        hook, NS, ID, job=first["metadata"]["name"], uid="uid-job-1", spec_hash=spec_hash(STAGE),
        index_map=IndexSet.full(1000),
    )  # fmt: skip
    first["status"] = {
        "conditions": [{"type": "Failed", "status": "True", "reason": "FailedIndexes"}],
        "completedIndexes": "0-899",
        "failedIndexes": "900-999",
    }
    hook.pods = [_pod(first, i, _result_of(i)) for i in range(900)]
    _, failure = finish_stage(hook, NS, ID, first, completions=1000, log=LOG)
    assert failure is not None
    # the retry runs only 900-999 (Job-local 0-99) and reports only those
    result = _run_attempt(hook, 2, IndexSet.parse("900-999"), try_number=2)
    assert result["completed_indexes"] == "0-999" and result["results_total"] == 1000
    assert result["results"]["0"] == _result_of(0)  # inline: from the earlier attempt
    assert read_results(hook, NS, "d", "r1", "t") == {i: _result_of(i) for i in range(1000)}
    # a later try with nothing left to run ("done") returns them all again
    again, _ = finish_stage(hook, NS, ID, None, completions=1000, log=LOG)
    assert again["results_total"] == 1000 and again["results"] == result["results"]


def test_results_of_another_spec_do_not_count():
    hook = Hook()
    _run_attempt(hook, 1, IndexSet.parse("0-9"))
    other = StageSpec(image="python:3.12-slim", command=("python", "-m", "work2"), completions=1000)
    ledger.attempt_started(hook, NS, ID, job="kb-other-g2", uid="uid-2", spec_hash=spec_hash(other),
                           index_map=IndexSet.full(1000))  # fmt: skip
    assert read_results(hook, NS, "d", "r1", "t") == {}


def test_no_results_no_results_configmaps():
    job = _job("Indexed", 2, [("Complete", "CompletionsReached")], completedIndexes="0-1")
    hook = Hook([_pod(job, i, "not an object: no result") for i in range(2)])  # type: ignore[arg-type]
    _started(hook, 2)
    hook.calls.clear()
    result, _ = finish_stage(hook, "ns", ID, job, completions=2, log=LOG)
    assert hook.verbs() == ["list_pods", "update_config_map_cas"]  # no list, no put
    assert (result["results"], result["results_inline"], result["results_total"], result["results_ref"]) == (
        {}, 0, 0, None
    )  # fmt: skip


def test_finishing_the_same_attempt_again_writes_nothing_new():
    hook = Hook()
    first = _run_attempt(hook, 1, IndexSet.parse("0-9"))
    job = _real_job(1, IndexSet.parse("0-9"), "uid-job-1")
    before = copy.deepcopy(hook.config_maps)
    hook.pods = hook.pods[:3]  # TTL removed most pods meanwhile: their stored results stay
    again, _ = finish_stage(hook, NS, ID, job, completions=1000, log=LOG)
    assert again["results"] == first["results"] and again["results_total"] == 10
    assert [c for c in hook.calls[-3:] if c[0] == "put_config_map"] == []  # nothing new to store
    stored = {k: v for k, v in hook.config_maps.items() if k.startswith("kbatch-results-")}
    assert stored == {k: v for k, v in before.items() if k.startswith("kbatch-results-")}


def test_a_ledger_record_written_by_an_older_provider_keeps_its_preview():
    hook = Hook()
    data = records.record_attempt_started({}, records.stage_key("t"), try_number=1, job="kb-old", uid="u-old",
                                          spec_hash=spec_hash(STAGE), index_map="0-999", at="t0")  # fmt: skip
    data = records.record_attempt_finished(data, records.stage_key("t"), job="kb-old", uid="u-old", succeeded=False,
                                           at="t1", completed="0-899", results={0: {"old": 0}})  # fmt: skip
    raw = json.loads(data[records.stage_key("t")])
    del raw["attempts"][0]["results"]  # an older provider did not count, nor store, results
    data = {records.stage_key("t"): json.dumps(raw)}
    hook.update_config_map_cas(NS, records.ledger_name("d", "r1"), lambda _: data)
    result = _run_attempt(hook, 2, IndexSet.parse("900-999"), try_number=2)
    assert result["results"]["0"] == {"old": 0} and result["results_total"] == 101


# --------------------------------------------------------------------------- every ledger write is bounded


def test_40_stages_with_large_results_every_write_succeeds_under_the_object_limit():
    """Before the budget, the ~15th stage's write failed with a 422 after its Job succeeded."""
    hook = Hook()
    big = {i: {"index": i, "blob": "x" * 440} for i in range(records.MAX_RESULTS)}
    for s in range(40):
        identity = JobIdentity("d", f"stage_{s:02d}", "r1")
        job = _job("Indexed", 100, [("Complete", "CompletionsReached")], completedIndexes="0-99")
        job["metadata"].update(name=f"kb-s{s}-g1", uid=f"u{s}")
        ledger.attempt_started(hook, NS, identity, job=f"kb-s{s}-g1", uid=f"u{s}", spec_hash="h",
                               index_map=IndexSet.full(100))  # fmt: skip
        hook.pods = [_pod(job, i, big[i]) for i in range(100)]
        _, failure = finish_stage(hook, NS, identity, job, completions=100, log=LOG)
        assert failure is None
    data = hook.data
    assert records.ledger_size(data) <= records.LEDGER_BUDGET_BYTES
    for s in range(40):
        rec = records.read_stage(data, records.stage_key(f"stage_{s:02d}"))
        assert rec is not None and rec.state == "succeeded" and rec.completed == IndexSet.full(100)
        assert read_results(hook, NS, "d", "r1", f"stage_{s:02d}") == big  # all still readable
    assert records.read_stage(data, records.stage_key("stage_39")).results == big  # type: ignore[union-attr]


def test_a_ledger_of_another_run_under_our_name_is_neither_read_nor_written():
    hook = Hook()
    name = records.ledger_name("d", "r1")
    hook._store({"metadata": {"name": name, "annotations": records.ledger_annotations("d", "r2")},
                 "data": {"stage.t": "{}"}})  # fmt: skip
    before = copy.deepcopy(hook.config_maps[name])
    with pytest.raises(
        records.LedgerIdentityError, match="belongs to DAG 'd' run 'r2', not to DAG 'd' run 'r1'"
    ):
        _started(hook, 2)
    with pytest.raises(records.LedgerIdentityError):
        ledger.read_stage(hook, NS, ID)
    with pytest.raises(records.LedgerIdentityError):
        read_results(hook, NS, "d", "r1", "t")
    assert hook.config_maps[name] == before


def test_the_ledger_is_created_with_its_identity_annotations():
    hook = Hook()
    _started(hook, 2)
    meta = hook.config_maps[records.ledger_name("d", "r1")]["metadata"]
    assert meta["annotations"] == records.ledger_annotations("d", "r1")
    assert meta["labels"] == records.ledger_labels("d", "r1")


def test_the_jobs_own_times_go_into_its_ledger_attempt_for_after_the_job_is_gone():
    hook = Hook([])
    _started(hook, 2)
    job = _job("Indexed", 2, [("Failed", "BackoffLimitExceeded")], completedIndexes="0", failedIndexes="1")
    job["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    job["status"]["startTime"] = "2026-01-01T00:00:07Z"  # suspended 7 s (Kueue)
    job["status"]["conditions"][0]["lastTransitionTime"] = "2026-01-01T00:01:00Z"
    finish_stage(hook, "ns", ID, job, completions=2, log=LOG)
    attempt = records.read_stage(hook.data, records.stage_key("t")).latest_attempt  # type: ignore[union-attr]
    assert attempt is not None
    assert (attempt.job_created, attempt.job_started, attempt.job_ended) == (
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:07Z",
        "2026-01-01T00:01:00Z",
    )


def _resumed_attempt(index_map: IndexSet) -> dict[str, Any]:
    """Attempt 2 of a resumed stage: Job-local indexes 0.. run the logical ``index_map``."""
    return _real_job(2, index_map, "uid-job-2")


def _start(hook: Hook, job: dict[str, Any]) -> None:
    index_map = IndexSet.parse(job["metadata"]["annotations"]["kbatch.io/index-map"])
    ledger.attempt_started(
        hook, NS, ID, job=job["metadata"]["name"], uid=job["metadata"]["uid"], spec_hash=spec_hash(STAGE),
        index_map=index_map,
    )  # fmt: skip


def test_completed_indexes_whose_pods_are_gone_are_named_not_dropped_silently(caplog: Any) -> None:
    """The pod garbage collector deletes terminated pods beyond 12,500 (its default threshold)
    while a big Job still runs: a 20,000-index run read back 12,617 results and said nothing.
    Their results are lost with the pods; the task says which indexes, in its log and its XCom."""
    hook, job = Hook(), _resumed_attempt(IndexSet.parse("100-109"))
    _start(hook, job)
    hook.pods = [_pod(job, local, _result_of(100 + local)) for local in (0, 1, 2, 3, 4, 8)]
    with caplog.at_level(logging.WARNING):
        result, failure = finish_stage(hook, NS, ID, job, completions=1000, log=LOG)
    assert failure is None and result["completed_indexes"] == "100-109"
    assert result["results_unreadable"] == "105-107,109"
    assert result["results_total"] == 6
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "4 completed indexes have no pod left" in warning and "105-107,109" in warning


def test_no_word_about_unreadable_results_when_every_pod_is_there() -> None:
    result = _run_attempt(Hook(), 1, IndexSet.full(20))
    assert "results_unreadable" not in result and result["results_total"] == 20


def test_results_the_wait_kept_of_deleted_pods_are_read_back_and_not_called_unreadable() -> None:
    """The wait stores the results of the pods it saw deleted (engine.results.rescue); the
    outcome reads them for the indexes without a pod, and names only those still missing."""
    hook, job = Hook(), _resumed_attempt(IndexSet.parse("100-109"))
    _start(hook, job)
    written = stored_results.rescue(hook, NS, job, {5: _result_of(105), 6: _result_of(106)})
    assert written and all(name.startswith("kbatch-results-") for name in written)
    hook.pods = [_pod(job, local, _result_of(100 + local)) for local in (0, 1, 2, 3, 4, 8)]
    hook.calls.clear()
    result, failure = finish_stage(hook, NS, ID, job, completions=1000, log=LOG)
    # the stored attempts are listed once, for the rescued results and the whole stage's
    assert [c for c in hook.calls if c[0] == "list_config_maps"] == [("list_config_maps", ANY)]
    assert failure is None and result["results_unreadable"] == "107,109"
    assert result["results_total"] == 8
    every = stored_results.read_results(hook, **result["results_ref"])
    assert every == {i: _result_of(i) for i in (100, 101, 102, 103, 104, 105, 106, 108)}


def test_a_job_that_is_no_stage_rescues_nothing() -> None:
    job = _job("Indexed", 2, [("Complete", "CompletionsReached")], completedIndexes="0-1")
    hook = Hook()
    assert stored_results.rescue(hook, NS, job, {0: {"v": 1}}) == [] and hook.calls == []
