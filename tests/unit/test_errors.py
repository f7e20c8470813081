from __future__ import annotations

import json
import pickle

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from airflow_provider_kbatch.errors import (
    AlreadyExists,
    Cause,
    Conflict,
    Gone,
    JobAlreadyExists,
    JobDeleted,
    KbatchApiError,
    NotFound,
    api_error,
    from_client_exception,
)
from tests.unit.hooks.fakes import status_body, to_dict

# What kube-apiserver answers to a Job with completions: -1 and no restartPolicy.
INVALID_JOB = to_dict(
    client.V1Status(
        api_version="v1",
        kind="Status",
        status="Failure",
        code=422,
        reason="Invalid",
        message='Job.batch "kb-bad" is invalid: [spec.completions: Invalid value: -1: must be greater than or '
        'equal to 0, spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"]',
        details=client.V1StatusDetails(
            name="kb-bad",
            group="batch",
            kind="Job",
            causes=[
                client.V1StatusCause(
                    reason="FieldValueInvalid",
                    message="Invalid value: -1: must be greater than or equal to 0",
                    field="spec.completions",
                ),
                client.V1StatusCause(
                    reason="FieldValueRequired",
                    message='Required value: valid values: "OnFailure", "Never"',
                    field="spec.template.spec.restartPolicy",
                ),
            ],
        ),
    )
)


def client_exception(status: int, body: dict[str, object]) -> ApiException:
    exc = ApiException(status=status, reason="Unprocessable Entity")
    exc.body = json.dumps(body).encode()
    exc.headers = {"Content-Type": "application/json"}
    return exc


def test_422_lists_each_field_cause_on_its_own_line() -> None:
    error = from_client_exception(client_exception(422, INVALID_JOB))
    assert type(error) is KbatchApiError
    assert (error.status, error.reason) == (422, "Invalid")
    assert error.causes == (
        Cause(
            "spec.completions", "Invalid value: -1: must be greater than or equal to 0", "FieldValueInvalid"
        ),
        Cause(
            "spec.template.spec.restartPolicy",
            'Required value: valid values: "OnFailure", "Never"',
            "FieldValueRequired",
        ),
    )
    assert str(error) == (
        'Kubernetes API error 422 (Invalid): Job.batch "kb-bad" is invalid\n'
        "  - spec.completions: Invalid value: -1: must be greater than or equal to 0\n"
        '  - spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"'
    )


@pytest.mark.parametrize(
    ("code", "reason", "cls"),
    [
        (404, "NotFound", NotFound),
        (409, "AlreadyExists", AlreadyExists),
        (409, "Conflict", Conflict),
        (410, "Expired", Gone),
        (403, "Forbidden", KbatchApiError),
        (500, "InternalError", KbatchApiError),
    ],
)
def test_status_selects_the_error_class(code: int, reason: str, cls: type) -> None:
    error = api_error(code, None, status_body(code, reason, "msg"))
    assert type(error) is cls
    assert str(error) == f"Kubernetes API error {code} ({reason}): msg"


def test_non_json_body_keeps_the_text() -> None:
    error = api_error(502, "Bad Gateway", b"upstream connect error\n")
    assert str(error) == "Kubernetes API error 502 (Bad Gateway): upstream connect error"
    assert api_error(503, "Service Unavailable", None).message == "Service Unavailable"


def test_errors_pickle() -> None:
    error = api_error(422, None, INVALID_JOB)
    again = pickle.loads(pickle.dumps(error))
    assert str(again) == str(error)
    exists = JobAlreadyExists({"metadata": {"name": "j", "namespace": "ns", "uid": "u1"}})
    again_exists = pickle.loads(pickle.dumps(exists))
    assert again_exists.job == exists.job
    assert "uid u1" in str(again_exists)
    deleted = pickle.loads(pickle.dumps(JobDeleted("ns", "j")))
    assert str(deleted) == "Job ns/j was deleted"


def test_job_already_exists_is_a_409() -> None:
    exists = JobAlreadyExists({"metadata": {"name": "j", "namespace": "ns", "uid": "u1"}})
    assert isinstance(exists, AlreadyExists)
    assert exists.status == 409
