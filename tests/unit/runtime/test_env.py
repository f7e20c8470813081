from __future__ import annotations

import re
from pathlib import Path

import pytest

from airflow_provider_kbatch import runtime
from airflow_provider_kbatch.runtime import env as kenv
from airflow_provider_kbatch.runtime.errors import ConfigError


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, 0),
        ({"JOB_COMPLETION_INDEX": "4"}, 4),
        ({"KBATCH_INDEX": "7", "JOB_COMPLETION_INDEX": "4"}, 7),
        # NonIndexed Job: Kubernetes leaves an undefined $(VAR) reference verbatim.
        ({"KBATCH_INDEX": "$(JOB_COMPLETION_INDEX)"}, 0),
        ({"KBATCH_INDEX": ""}, 0),
        ({"KBATCH_INDEX": " 3 "}, 3),
        # Resumed attempt: the map wins over KBATCH_INDEX (which would be Job-local without the shim).
        ({"KBATCH_INDEX_MAP": "0-2,5,9-12", "JOB_COMPLETION_INDEX": "0"}, 0),
        ({"KBATCH_INDEX_MAP": "0-2,5,9-12", "JOB_COMPLETION_INDEX": "3", "KBATCH_INDEX": "3"}, 5),
        ({"KBATCH_INDEX_MAP": "0-2,5,9-12", "JOB_COMPLETION_INDEX": "7"}, 12),
        ({"KBATCH_INDEX_MAP": "98765", "JOB_COMPLETION_INDEX": "0"}, 98765),
    ],
)
def test_index(env: dict[str, str], expected: int) -> None:
    assert kenv.index(env) == expected


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"KBATCH_INDEX": "-1"}, "KBATCH_INDEX='-1': expected a non-negative integer"),
        ({"KBATCH_INDEX": "x"}, "KBATCH_INDEX='x'"),
        ({"JOB_COMPLETION_INDEX": "1.5"}, "JOB_COMPLETION_INDEX='1.5'"),
        (
            {"KBATCH_INDEX_MAP": "0-2,x", "JOB_COMPLETION_INDEX": "0"},
            "KBATCH_INDEX_MAP '0-2,x': bad part 'x'",
        ),
        ({"KBATCH_INDEX_MAP": "5,1", "JOB_COMPLETION_INDEX": "0"}, "not above the previous part"),
        ({"KBATCH_INDEX_MAP": "0-2"}, "JOB_COMPLETION_INDEX is not"),
        (
            {"KBATCH_INDEX_MAP": "0-2", "JOB_COMPLETION_INDEX": "3"},
            "JOB_COMPLETION_INDEX=3 is beyond the end",
        ),
        ({"KBATCH_INDEX_MAP": "", "JOB_COMPLETION_INDEX": "0"}, "(0 indexes)"),
        ({"KBATCH_INDEX_MAP": "1", "JOB_COMPLETION_INDEX": "a"}, "JOB_COMPLETION_INDEX='a'"),
    ],
)
def test_index_errors(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        kenv.index(env)
    assert fragment in str(err.value)


def test_index_reads_os_environ(set_env) -> None:
    set_env(KBATCH_INDEX_MAP="10-19", JOB_COMPLETION_INDEX="2")
    assert runtime.index() == 12


@pytest.mark.parametrize(
    ("name", "var"),
    [
        ("raw", "KBATCH_INPUT_RAW_DIR"),
        ("raw-events.v2", "KBATCH_INPUT_RAW_EVENTS_V2_DIR"),
        ("Ünïcode", "KBATCH_INPUT__N_CODE_DIR"),
        ("a b", "KBATCH_INPUT_A_B_DIR"),
    ],
)
def test_input_env_name(name: str, var: str) -> None:
    assert kenv.input_env_name(name) == var
    assert kenv.input_dir(name, {var: "/data/in"}) == Path("/data/in")
    assert kenv.input_contract_env_name(name) == var[: -len("_DIR")] + "_CONTRACT"


def test_input_dir_missing_lists_known_inputs() -> None:
    with pytest.raises(
        ConfigError, match=r"KBATCH_INPUT_CLEAN_DIR is not set; inputs of this stage: KBATCH_INPUT_RAW_DIR"
    ):
        kenv.input_dir("clean", {"KBATCH_INPUT_RAW_DIR": "/in/raw"})


@pytest.mark.parametrize(
    ("func", "var"),
    [(kenv.run_id, "KBATCH_RUN_ID"), (kenv.stage, "KBATCH_STAGE"), (kenv.output_dir, "KBATCH_OUTPUT_DIR")],
)
def test_required_values(func, var: str) -> None:
    with pytest.raises(ConfigError, match=f"{var} is not set"):
        func({})
    assert str(func({var: "v"})) == "v"


def test_image_optional() -> None:
    assert kenv.image({}) is None
    assert kenv.image({"KBATCH_IMAGE": "img:1"}) == "img:1"


def test_checkpoint_dir_is_per_logical_index(tmp_path: Path) -> None:
    env = {"KBATCH_CHECKPOINT_DIR": str(tmp_path), "KBATCH_INDEX_MAP": "3,8", "JOB_COMPLETION_INDEX": "1"}
    path = kenv.checkpoint_dir(env)
    assert path == tmp_path / "8"
    assert path.is_dir()
    with pytest.raises(ConfigError, match="KBATCH_CHECKPOINT_DIR is not set"):
        kenv.checkpoint_dir({})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        ("", None),
        (
            '{"name": "events", "version": "1.2", "fields": {"id": "int"}}',
            {"name": "events", "version": "1.2", "fields": {"id": "int"}},
        ),
        ('{"name": "events", "version": "1.2"}', {"name": "events", "version": "1.2", "fields": {}}),
    ],
)
def test_output_contract(raw: str | None, expected) -> None:
    env = {} if raw is None else {"KBATCH_OUTPUT_CONTRACT": raw}
    assert kenv.output_contract(env) == expected


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("{", "KBATCH_OUTPUT_CONTRACT"),
        ('{"name": "e", "version": "1"}', "expected 'MAJOR.MINOR'"),
        ('{"name": "e", "version": "1.0", "fields": {"a": "list"}}', "field 'a'"),
    ],
)
def test_output_contract_malformed(raw: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        kenv.output_contract({"KBATCH_OUTPUT_CONTRACT": raw})
    assert fragment in str(err.value)


def test_stage_indexes() -> None:
    assert kenv.stage_indexes({}) is None
    assert kenv.stage_indexes({"KBATCH_STAGE_INDEXES": "0-7"}) == ((0, 7),)
    with pytest.raises(ConfigError, match="KBATCH_STAGE_INDEXES"):
        kenv.stage_indexes({"KBATCH_STAGE_INDEXES": "x"})


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, 1),
        ({"KBATCH_TRY_NUMBER": "3"}, 3),
        ({"KBATCH_TRY_NUMBER": ""}, 1),
        ({"KBATCH_TRY_NUMBER": "$(X)"}, 1),
    ],
)
def test_try_number(env: dict[str, str], expected: int) -> None:
    assert runtime.try_number(env) == expected


def test_try_number_rejects_garbage() -> None:
    with pytest.raises(runtime.ConfigError, match="KBATCH_TRY_NUMBER='two'"):
        runtime.try_number({"KBATCH_TRY_NUMBER": "two"})


def test_readme_lists_every_kbatch_variable() -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    listed = set(re.findall(r"^\| `((?:KBATCH|JOB)_[A-Z_<>]+)` \|", readme, re.M))
    declared = {v for k, v in vars(kenv).items() if k.isupper() and isinstance(v, str) and v.isupper()}
    per_input = {kenv.input_env_name("x"), kenv.input_contract_env_name("x")}
    assert per_input == {"KBATCH_INPUT_X_DIR", "KBATCH_INPUT_X_CONTRACT"}
    assert listed == declared | {v.replace("_X_", "_<NAME>_") for v in per_input}
