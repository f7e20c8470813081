from __future__ import annotations

import pytest

from airflow_provider_kbatch.pipeline.summary import split_output_summary


@pytest.mark.parametrize(
    ("result", "user", "digest"),
    [
        ({"rows": 1}, {"rows": 1}, None),
        (
            {"rows": 1, "_kbatch_output": {"manifest_digest": "sha256:ab", "bytes": 3, "records": None}},
            {"rows": 1},
            "sha256:ab",
        ),
        ({"_kbatch_output": "garbage"}, {}, None),
    ],
)
def test_split_output_summary(result: dict, user: dict, digest: str | None) -> None:
    got_user, summary = split_output_summary(result)
    assert got_user == user
    assert (summary.manifest_digest if summary else None) == digest
