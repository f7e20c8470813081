from __future__ import annotations

import pickle

import pytest

from airflow_provider_kbatch.spec.errors import KbatchSpecError, KbatchSpecErrors, ProblemCollector


@pytest.mark.parametrize(
    ("field", "problem", "fix", "expected"),
    [
        (
            "completions",
            "must be at least 1, got 0",
            "Pass 1 or more.",
            "completions: must be at least 1, got 0. Pass 1 or more.",
        ),
        ("image", "is empty.", "Pass an image.", "image: is empty. Pass an image."),
        ("image", "is empty", "", "image: is empty."),
    ],
)
def test_message_format(field: str, problem: str, fix: str, expected: str) -> None:
    err = KbatchSpecError(field, problem, fix)
    assert str(err) == expected
    assert (err.field, err.fix) == (field, fix)
    assert isinstance(err, ValueError)


def test_errors_lists_every_problem_and_is_a_spec_error() -> None:
    errs = KbatchSpecErrors([KbatchSpecError("a", "bad", "Fix a."), KbatchSpecError("b", "worse", "Fix b.")])
    assert isinstance(errs, KbatchSpecError)
    assert errs.field == "a, b"
    assert str(errs) == "2 problems in the stage description:\n  - a: bad. Fix a.\n  - b: worse. Fix b."
    assert [e.field for e in errs] == ["a", "b"]
    assert len(errs) == 2


def test_errors_need_at_least_one() -> None:
    with pytest.raises(ValueError, match="at least one"):
        KbatchSpecErrors([])


def test_errors_survive_pickling() -> None:
    # Airflow may pickle exceptions across processes
    single = pickle.loads(pickle.dumps(KbatchSpecError("a", "bad", "Fix.")))
    assert str(single) == "a: bad. Fix."
    many = pickle.loads(
        pickle.dumps(KbatchSpecErrors([KbatchSpecError("a", "x"), KbatchSpecError("b", "y")]))
    )
    assert [e.field for e in many.errors] == ["a", "b"]


def test_collector_raises_nothing_one_or_all() -> None:
    p = ProblemCollector()
    p.raise_if_any()
    p.add("a", "bad", "Fix.")
    with pytest.raises(KbatchSpecError) as one:
        p.raise_if_any()
    assert type(one.value) is KbatchSpecError
    p.add("b", "bad", "Fix.")
    with pytest.raises(KbatchSpecErrors) as many:
        p.raise_if_any()
    assert [e.field for e in many.value.errors] == ["a", "b"]
