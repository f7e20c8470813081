"""Structured log lines on stdout (where pod logs come from), one line per call, flushed.

Two formats, chosen by the ``fmt`` argument or ``KBATCH_LOG_FORMAT``:

- ``kv`` (default, logfmt): ``ts=2024-05-01T10:00:00.123Z level=info index=3 msg="rows written" rows=120``
- ``json``: ``{"ts": "...", "level": "info", "index": 3, "msg": "rows written", "rows": 120}``

The operator streams these lines into the Airflow task log, prefixed by index. Never log secrets.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, TextIO

from airflow_provider_kbatch.runtime import env as kenv
from airflow_provider_kbatch.runtime.errors import ConfigError

FORMATS = ("kv", "json")
_BARE = re.compile(r"^[A-Za-z0-9_.:/@+-]+$")
_KEY = re.compile(r"[^A-Za-z0-9_.-]")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _kv_value(value: Any) -> str:
    if isinstance(value, str):
        return value if _BARE.match(value) else json.dumps(value, ensure_ascii=False)
    if value is None or isinstance(value, (bool, int, float)):
        return json.dumps(value)
    text = json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))
    return text if _BARE.match(text) else json.dumps(text, ensure_ascii=False)


def format_line(fields: Mapping[str, Any], fmt: str = "kv") -> str:
    """One log line (no newline) for an ordered mapping of fields."""
    if fmt == "json":
        return json.dumps(dict(fields), ensure_ascii=False, default=str, separators=(", ", ": "))
    if fmt == "kv":
        return " ".join(f"{_KEY.sub('_', str(k)) or '_'}={_kv_value(v)}" for k, v in fields.items())
    raise ConfigError(f"log format {fmt!r}: expected one of {', '.join(FORMATS)}")


def log(
    msg: str,
    /,
    *,
    level: str = "info",
    fmt: str | None = None,
    stream: TextIO | None = None,
    **fields: Any,
) -> str:
    """Write one structured line to stdout and flush it; return the line.

    Fields ``ts``, ``level``, ``index`` (when it can be determined) and ``msg`` come first, then
    ``fields`` in the order given. Values that are not JSON types are rendered with ``str``.
    """
    chosen = fmt or os.environ.get(kenv.LOG_FORMAT) or "kv"
    line_fields: dict[str, Any] = {"ts": _now(), "level": level}
    with contextlib.suppress(ConfigError):  # logging must never be the thing that fails
        line_fields["index"] = kenv.index()
    line_fields["msg"] = msg
    line_fields.update(fields)
    line = format_line(line_fields, chosen).replace("\n", "\\n")
    out = stream if stream is not None else sys.stdout
    out.write(line + "\n")
    out.flush()
    return line
