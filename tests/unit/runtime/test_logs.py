from __future__ import annotations

import io
import json

import pytest

from airflow_provider_kbatch import runtime
from airflow_provider_kbatch.runtime import logs
from airflow_provider_kbatch.runtime.errors import ConfigError


@pytest.mark.parametrize(
    ("fields", "line"),
    [
        ({"msg": "done", "rows": 3}, "msg=done rows=3"),
        ({"msg": "rows written"}, 'msg="rows written"'),
        ({"ok": True, "none": None, "ratio": 0.5}, "ok=true none=null ratio=0.5"),
        ({"empty": ""}, 'empty=""'),
        ({"q": 'say "hi"'}, r'q="say \"hi\""'),
        ({"multi": "a\nb"}, r'multi="a\nb"'),
        ({"eq": "a=b"}, 'eq="a=b"'),
        ({"l": [1, 2]}, 'l="[1,2]"'),
        ({"bad key": 1}, "bad_key=1"),
        ({"path": "/data/out/x.jsonl"}, "path=/data/out/x.jsonl"),
    ],
)
def test_kv_format(fields: dict, line: str) -> None:
    assert logs.format_line(fields, "kv") == line


def test_json_format_roundtrips() -> None:
    line = logs.format_line({"msg": "a\nb", "n": 1, "obj": object}, "json")
    assert "\n" not in line
    assert json.loads(line)["msg"] == "a\nb"


def test_unknown_format() -> None:
    with pytest.raises(ConfigError, match="log format 'xml'"):
        logs.format_line({}, "xml")


def test_log_writes_one_flushed_line_to_stdout(set_env, capsys: pytest.CaptureFixture[str]) -> None:
    set_env(KBATCH_INDEX="5")
    line = runtime.log("rows written", rows=12, file="a b.jsonl")
    out = capsys.readouterr().out
    assert out == line + "\n"
    assert out.count("\n") == 1
    assert line.startswith("ts=")
    assert ' level=info index=5 msg="rows written" rows=12 file="a b.jsonl"' in line


def test_log_json_from_env(set_env) -> None:
    set_env(KBATCH_LOG_FORMAT="json", KBATCH_INDEX="2")
    stream = io.StringIO()
    runtime.log("hi", level="warning", stream=stream, n=1)
    record = json.loads(stream.getvalue())
    assert [k for k in record] == ["ts", "level", "index", "msg", "n"]
    assert record["level"] == "warning" and record["index"] == 2 and record["n"] == 1


def test_log_survives_a_broken_index(set_env) -> None:
    set_env(KBATCH_INDEX="oops")
    stream = io.StringIO()
    line = runtime.log("still logs", stream=stream)
    assert "index=" not in line and 'msg="still logs"' in line
