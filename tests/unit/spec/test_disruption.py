"""disruption_budget=: the checks (every wrong shape named) and the PDB it compiles to."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_kbatch.spec.disruption import min_available, pdb_manifest
from airflow_provider_kbatch.spec.errors import KbatchSpecError
from airflow_provider_kbatch.spec.names import CONTROLLER_UID_LABEL
from airflow_provider_kbatch.spec.stage import StageSpec
from airflow_provider_kbatch.spec.validation import stage_problems


def problems(budget: Any) -> list[str]:
    return [str(e) for e in stage_problems(StageSpec(image="i", disruption_budget=budget))]


@pytest.mark.parametrize(
    "budget",
    [None, {"min_available": 2}, {"minAvailable": 0}, {"max_unavailable": "50%"}, {"maxUnavailable": "2"},
     {"min_available": "100%"}],
)  # fmt: skip
def test_valid_budgets(budget: Any) -> None:
    assert problems(budget) == []


@pytest.mark.parametrize(
    ("budget", "expected"),
    [
        (2, "disruption_budget: must be a mapping, got int 2"),
        ({}, "disruption_budget: needs exactly one of min_available or max_unavailable, got no key"),
        ({"min_available": 1, "max_unavailable": 1}, "got 2 keys (min_available, max_unavailable)"),
        ({"minimum": 1}, "disruption_budget: has no key 'minimum'"),
        ({"min_available": -1}, "disruption_budget.min_available: must be 0 or more, got -1"),
        ({"max_unavailable": "150%"}, "disruption_budget.max_unavailable: '150%' is more than 100%"),
        ({"max_unavailable": "half"}, "must be an int or a percentage like '50%', got 'half'"),
        ({"min_available": True}, "must be an int or a percentage string, got bool True"),
        ({"min_available": 1.5}, "got float 1.5"),
    ],
)
def test_invalid_budgets_name_the_field_and_the_fix(budget: Any, expected: str) -> None:
    found = problems(budget)
    assert len(found) == 1 and expected in found[0], found
    assert "Pass disruption_budget={'min_available': 2}" in found[0]
    assert all(
        isinstance(e, KbatchSpecError) for e in stage_problems(StageSpec(image="i", disruption_budget=budget))
    )


@pytest.mark.parametrize(
    ("budget", "expected_pods", "minimum"),
    [
        ({"min_available": 2}, 2, 2),
        ({"min_available": "2"}, 5, 2),
        ({"max_unavailable": 0}, 2, 2),
        ({"max_unavailable": 1}, 4, 3),
        ({"max_unavailable": 9}, 4, 0),
        ({"max_unavailable": "50%"}, 3, 1),  # 1.5 unavailable rounds up to 2: 1 must stay
        ({"min_available": "50%"}, 3, 2),  # 1.5 available rounds up
        ({"minAvailable": "100%"}, 7, 7),
    ],
)
def test_budgets_compile_to_an_integer_min_available(budget: Any, expected_pods: int, minimum: int) -> None:
    assert min_available(budget, expected_pods) == minimum


def test_pdb_is_owned_by_the_job_and_selects_its_pods_by_uid() -> None:
    job = {
        "metadata": {"name": "kb-x-g1", "uid": "u-1", "labels": {"kbatch.io/dag-id": "d"}},
        "spec": {"parallelism": 2, "completions": 6},
    }
    pdb = pdb_manifest(job, {"max_unavailable": 0})
    assert pdb["metadata"]["name"] == "kb-x-g1"
    assert pdb["metadata"]["labels"] == {"kbatch.io/dag-id": "d"}
    assert pdb["metadata"]["ownerReferences"] == [
        {"apiVersion": "batch/v1", "kind": "Job", "name": "kb-x-g1", "uid": "u-1"}
    ]
    assert pdb["spec"] == {"minAvailable": 2, "selector": {"matchLabels": {CONTROLLER_UID_LABEL: "u-1"}}}
    # parallelism above the completions left: the pods that run at once are the completions
    job["spec"] = {"parallelism": 5, "completions": 3}
    assert pdb_manifest(job, {"min_available": "100%"})["spec"]["minAvailable"] == 3


class PdbHook:
    """create/get of PodDisruptionBudgets in memory; ``gc_after`` gets remove a foreign one."""

    def __init__(self, existing: dict[str, Any] | None = None, gc_after: int = 2) -> None:
        self.pdbs = {existing["metadata"]["name"]: existing} if existing else {}
        self.gets = 0
        self.gc_after = gc_after

    def create_pod_disruption_budget(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        from airflow_provider_kbatch.errors import AlreadyExists

        if body["metadata"]["name"] in self.pdbs:
            raise AlreadyExists(409, "AlreadyExists", "exists")
        self.pdbs[body["metadata"]["name"]] = {**body, "metadata": {**body["metadata"], "uid": "pdb-1"}}
        return self.pdbs[body["metadata"]["name"]]

    def get_pod_disruption_budget(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.gets += 1
        if self.gets >= self.gc_after:
            self.pdbs.pop(name, None)  # the garbage collector removed the earlier Job's PDB
        return self.pdbs.get(name)


JOB = {"metadata": {"name": "kb-x-g1", "uid": "u-2"}, "spec": {"parallelism": 2, "completions": 2}}


def test_ensure_budget_keeps_its_own_and_waits_out_an_earlier_jobs() -> None:
    from airflow_provider_kbatch.engine.disruption import ensure_budget

    assert ensure_budget(PdbHook(), "ns", JOB, None) is None
    hook = PdbHook()
    first = ensure_budget(hook, "ns", JOB, {"min_available": 2})
    assert first is not None and ensure_budget(hook, "ns", JOB, {"min_available": 2}) == first
    earlier = pdb_manifest({**JOB, "metadata": {"name": "kb-x-g1", "uid": "u-1"}}, {"min_available": 1})
    slept: list[float] = []
    hook = PdbHook(existing=earlier, gc_after=3)
    made = ensure_budget(hook, "ns", JOB, {"min_available": 2}, sleep=slept.append)
    assert made is not None and made["metadata"]["ownerReferences"][0]["uid"] == "u-2"
    assert slept == [1.0, 1.0]


def test_ensure_budget_gives_up_on_a_foreign_pdb_naming_it() -> None:
    from airflow_provider_kbatch.engine.disruption import ensure_budget
    from airflow_provider_kbatch.errors import KbatchError

    foreign = {"metadata": {"name": "kb-x-g1", "ownerReferences": []}, "spec": {}}
    with pytest.raises(KbatchError, match="kubectl delete pdb kb-x-g1 -n ns"):
        ensure_budget(PdbHook(existing=foreign, gc_after=10**6), "ns", JOB, {"min_available": 2},
                      wait_seconds=3, sleep=lambda s: None)  # fmt: skip
