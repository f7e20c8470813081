"""The operator's compensation and cache options: checked after templating, before any request,
each named; the task fails without retries."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_kbatch.operators.job import StageAction
from airflow_provider_kbatch.pipeline.workspace import Workspace
from tests.unit.glue.test_operator_arguments import ConnHook, context, fields_of, invalid, operator


@pytest.mark.parametrize(
    ("kwargs", "fields"),
    [
        pytest.param({"cache": True, "cache_version": 7}, {"cache_version"}, id="version-int"),
        pytest.param({"cache": "yes"}, {"cache"}, id="cache-str"),
        pytest.param({"cache_version": "2"}, {"cache_version"}, id="version-without-cache"),
        pytest.param({"on_failure": {"cmd": ["undo"]}}, {"on_failure"}, id="on-failure-unknown"),
        pytest.param({"on_failure": "undo.sh"}, {"on_failure"}, id="on-failure-string"),
        pytest.param(
            {"on_failure": StageAction(command=["undo"], when="always")},  # type: ignore[arg-type]
            {"on_failure.when"},
            id="on-failure-when",
        ),
        pytest.param(
            {"cache": True, "output": "rows", "workspace": Workspace(create=True)},
            {"cache"},
            id="cache-on-a-per-run-claim",
        ),
        pytest.param(
            {"cache": True, "cache_version": 1, "on_failure": {"image": "x"}},
            {"cache_version", "on_failure.command"},
            id="all-at-once",
        ),
    ],
)
def test_bad_options_fail_before_any_request(kwargs: dict[str, Any], fields: set[str]) -> None:
    hook = ConnHook()
    err = invalid(operator(hook, namespace="batch", **kwargs), context())
    assert fields_of(err) == fields, str(err)
    assert hook.requests() == []


def test_good_options_are_accepted() -> None:
    op = operator(
        None,
        namespace="batch",
        cache=True,
        cache_version="3",
        on_failure={"command": ["undo"], "when": "final"},
        workspace=Workspace(claim_name="shared"),
        output="rows",
    )
    op.render_template_fields(context())
    assert op.job_manifest is not None and "invalid" not in op.job_manifest, op.job_manifest
