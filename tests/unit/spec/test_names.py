from __future__ import annotations

import itertools
import re
from datetime import date, timedelta

import pytest

from airflow_provider_kbatch.spec import names
from airflow_provider_kbatch.spec.names import (
    JobIdentity,
    identity_annotations,
    identity_from_annotations,
    identity_labels,
    is_label_value,
    job_name,
    qualified_name_problem,
    run_key,
    same_task_instance,
    sanitize_label_value,
    selector_for,
)

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
STRICT_LABEL_VALUE = re.compile(r"[a-z0-9]([-a-z0-9._]*[a-z0-9])?")

LONG = "x" * 300
IDENTITY = JobIdentity("etl_daily", "extract", "scheduled__2024-01-01T00:00:00+00:00", 3, 2)


def _selector_matches(selector: str, labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in (term.split("=", 1) for term in selector.split(",")))


@pytest.mark.parametrize(
    "identity",
    [
        IDENTITY,
        JobIdentity("A" * 250, "B" * 250, LONG),
        JobIdentity("___", "...", "+++"),
        JobIdentity("d", "t", "r"),
        JobIdentity("Ünïcödé DAG", "tâsk.group.sub_task", "manual__2024-05-05T10:00:00.123456+00:00"),
    ],
)
def test_job_name_is_a_short_dns_label(identity: JobIdentity) -> None:
    for generation in (0, 1, 7, 123456):
        name = job_name(identity, generation)
        assert len(name) <= 52
        assert DNS_LABEL.fullmatch(name), name
        assert name.startswith("kb-") and name.endswith(f"-g{generation}")
        # an Indexed pod hostname "<name>-<index>" must stay a DNS label for 100,000 indexes
        assert len(f"{name}-99999") <= 63
        assert job_name(identity, generation) == name  # deterministic


def test_job_name_shape_is_pinned() -> None:
    # a stored contract: adoption finds Jobs by this name after an upgrade
    assert job_name(IDENTITY, 2) == "kb-etl-daily-extract-" + names.identity_hash(IDENTITY)[:10] + "-g2"
    assert names.identity_hash(IDENTITY) == names._sha("etl_daily", "extract", IDENTITY.run_id, "3")
    assert job_name(JobIdentity("d", "t", "r"), 1) == "kb-d-t-ea6759e29e-g1"


def test_job_name_ignores_try_number_but_not_generation() -> None:
    retry = JobIdentity(IDENTITY.dag_id, IDENTITY.task_id, IDENTITY.run_id, IDENTITY.map_index, 5)
    assert job_name(retry, 1) == job_name(IDENTITY, 1)
    assert job_name(IDENTITY, 1) != job_name(IDENTITY, 2)


@pytest.mark.parametrize("generation", [-1, True, 1.0, "1"])
def test_job_name_rejects_bad_generation(generation: object) -> None:
    with pytest.raises(ValueError):
        job_name(IDENTITY, generation)  # type: ignore[arg-type]


def test_no_collisions_over_a_backfill_of_many_identities() -> None:
    """365 daily runs x map indexes x tasks x runs-with-similar-ids: names, labels, selectors unique."""
    start = date(2023, 1, 1)
    run_ids = [f"backfill__{start + timedelta(days=d)}T00:00:00+00:00" for d in range(365)]
    run_ids += [f"scheduled__{start + timedelta(days=d)}T00:00:00+00:00" for d in range(365)]
    # ids that sanitise identically must still differ
    run_ids += [
        "manual__2024-01-01T00:00:00+00:00",
        "manual__2024-01-01t00:00:00+00:00",
        "manual__2024-01-01T00_00_00+00_00",
    ]
    identities = [
        JobIdentity(dag, task, run, map_index)
        for dag, task in [("etl", "extract"), ("etl", "load"), ("ETL", "extract"), ("etl_", "extract")]
        for run in run_ids
        for map_index in (-1, 0, 1, 12)
    ]
    assert len(identities) > 10_000
    job_names = {job_name(i, 1) for i in identities}
    selectors = {selector_for(i) for i in identities}
    assert len(job_names) == len(identities)
    assert len(selectors) == len(identities)
    assert len({run_key(r) for r in run_ids}) == len(run_ids)


def test_selector_matches_every_generation_and_only_this_task_instance() -> None:
    selector = selector_for(IDENTITY)
    for generation in (1, 2, 9):
        assert _selector_matches(selector, identity_labels(IDENTITY, generation))
    others = [
        JobIdentity(IDENTITY.dag_id, IDENTITY.task_id, IDENTITY.run_id, 4),
        JobIdentity(IDENTITY.dag_id, IDENTITY.task_id, IDENTITY.run_id, -1),
        JobIdentity(IDENTITY.dag_id, "load", IDENTITY.run_id, 3),
        JobIdentity("ETL_DAILY", IDENTITY.task_id, IDENTITY.run_id, 3),
        JobIdentity(IDENTITY.dag_id, IDENTITY.task_id, "scheduled__2024-01-02T00:00:00+00:00", 3),
    ]
    for other in others:
        assert not _selector_matches(selector, identity_labels(other, 1)), other
    assert "kbatch.io/attempt" not in selector


def test_labels_and_annotations() -> None:
    labels = identity_labels(IDENTITY, 2)
    assert labels == {
        "app.kubernetes.io/managed-by": "airflow-provider-kbatch",
        "kbatch.io/dag-id": "etl_daily",
        "kbatch.io/task-id": "extract",
        "kbatch.io/run-key": run_key(IDENTITY.run_id),
        "kbatch.io/map-index": "3",
        "kbatch.io/attempt": "2",
    }
    assert identity_labels(JobIdentity("d", "t", "r"), 1)["kbatch.io/map-index"] == "none"
    assert all(
        is_label_value(v) and len(v) <= 63 for v in identity_labels(JobIdentity(LONG, LONG, LONG), 1).values()
    )
    annotations = identity_annotations(IDENTITY)
    assert annotations == {
        "kbatch.io/dag-id": "etl_daily",
        "kbatch.io/task-id": "extract",
        "kbatch.io/run-id": IDENTITY.run_id,
        "kbatch.io/map-index": "3",
        "kbatch.io/try-number": "2",
    }
    assert identity_from_annotations(annotations) == IDENTITY
    assert identity_from_annotations({}) is None
    assert identity_from_annotations({**annotations, "kbatch.io/map-index": "x"}) is None
    assert same_task_instance(IDENTITY, JobIdentity(IDENTITY.dag_id, IDENTITY.task_id, IDENTITY.run_id, 3, 9))
    assert not same_task_instance(
        IDENTITY, JobIdentity(IDENTITY.dag_id, IDENTITY.task_id, IDENTITY.run_id, 4)
    )
    assert not same_task_instance(IDENTITY, None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("extract", "extract"),
        ("my_dag.v2", "my_dag.v2"),
        ("My_DAG", "my_dag-" + names._sha("My_DAG")[:8]),
        ("a b", "a-b-" + names._sha("a b")[:8]),
        ("___", names._sha("___")[:8]),
        ("", names._sha("")[:8]),
    ],
)
def test_sanitize_label_value(value: str, expected: str) -> None:
    assert sanitize_label_value(value) == expected


def test_sanitize_label_value_keeps_distinct_inputs_distinct() -> None:
    values = ["ETL", "etl", "e.t.l", "e-t-l", "e_t_l", "e t l", "x" * 63, "x" * 64, "x" * 65, "X" * 63]
    sanitized = [sanitize_label_value(v) for v in values]
    assert len(set(sanitized)) == len(values)
    for value in sanitized:
        assert len(value) <= 63 and STRICT_LABEL_VALUE.fullmatch(value), value
    for length, text in itertools.product((1, 10, 63), ("Ab_", "-._", "é")):
        out = sanitize_label_value(text * 40, max_length=length + 9)
        assert len(out) <= length + 9 and STRICT_LABEL_VALUE.fullmatch(out)


@pytest.mark.parametrize(
    ("run_id", "expected_prefix"),
    [
        ("scheduled__2024-01-01T00:00:00+00:00", "scheduled-2024-01-01-"),
        ("manual__2024-06-30T12:00:00+00:00", "manual-2024-06-30t12-"),
        ("++", ""),
    ],
)
def test_run_key(run_id: str, expected_prefix: str) -> None:
    key = run_key(run_id)
    assert key == expected_prefix + names._sha(run_id)[:8]
    assert DNS_LABEL.fullmatch(key) and len(key) <= 29


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("team", None),
        ("example.com/team", None),
        ("a.b/c_d.e-f", None),
        ("/x", "prefix before '/' is empty"),
        ("Example.com/x", "prefix"),
        ("x/", "name part is empty"),
        ("x" * 64, "more than 63"),
        ("bad key", "must consist of"),
        ("-x", "must consist of"),
    ],
)
def test_qualified_name_problem(key: str, problem: str | None) -> None:
    result = qualified_name_problem(key)
    if problem is None:
        assert result is None
    else:
        assert result is not None and problem in result
