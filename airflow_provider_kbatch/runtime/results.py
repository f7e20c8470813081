"""A pod's small JSON result, handed to the operator through the container's termination message.

Kubernetes reads the file at ``terminationMessagePath`` (default ``/dev/termination-log``) when
the container exits and keeps at most 4096 bytes of it, so the result must fit in 4096 bytes of
UTF-8 JSON. The operator gathers the results per logical index (XCom) and keeps a capped sample
in the run ledger: never put secrets in a result.

When this process finalised the stage's output manifest, a small summary of it (digest, bytes,
records, contract) is attached under the key :data:`OUTPUT_KEY`, so the operator can record the
output in the ledger without reading the volume.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airflow_provider_kbatch.runtime import env as kenv

MAX_TERMINATION_MESSAGE_BYTES = 4096
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
OUTPUT_KEY = "_kbatch_output"


def termination_message_path(env: Mapping[str, str] | None = None) -> Path:
    """``KBATCH_TERMINATION_MESSAGE_PATH`` or ``/dev/termination-log``."""
    e = os.environ if env is None else env
    return Path(e.get(kenv.TERMINATION_MESSAGE_PATH) or DEFAULT_TERMINATION_MESSAGE_PATH)


def encode_result(obj: Mapping[str, Any]) -> bytes:
    """Compact, strict JSON (no NaN) of a result; ``ValueError`` with the size when over 4096 bytes."""
    if not isinstance(obj, Mapping):
        raise TypeError(f"a result must be a dict, got {type(obj).__name__}")
    try:
        text = json.dumps(dict(obj), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"a result must be JSON-serialisable: {exc}") from None
    data = text.encode("utf-8")
    if len(data) > MAX_TERMINATION_MESSAGE_BYTES:
        raise ValueError(
            f"result is {len(data)} bytes of JSON; a termination message holds at most "
            f"{MAX_TERMINATION_MESSAGE_BYTES}: write large results to the output directory instead"
        )
    return data


class ResultChannel:
    """Writes the termination message; remembers the last result and the output summary."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self._path = Path(path) if path is not None else None
        self._result: dict[str, Any] | None = None
        self._output: dict[str, Any] | None = None

    @property
    def path(self) -> Path:
        return self._path if self._path is not None else termination_message_path()

    def emit(self, obj: Mapping[str, Any]) -> Path:
        """Write ``obj`` (plus the output summary, if any) as the termination message."""
        if not isinstance(obj, Mapping):
            raise TypeError(f"a result must be a dict, got {type(obj).__name__}")
        merged = dict(obj)
        if self._output is not None and OUTPUT_KEY not in merged:
            merged[OUTPUT_KEY] = self._output
        data = encode_result(merged)
        _write_in_place(self.path, data)
        self._result = dict(obj)
        return self.path

    def attach_output(self, summary: Mapping[str, Any]) -> Path:
        """Remember the output summary and rewrite the message with it."""
        self._output = dict(summary)
        return self.emit(self._result or {})


def _write_in_place(path: Path, data: bytes) -> None:
    # The termination-log file is usually a bind mount: it cannot be replaced by a rename, so it
    # is truncated and written with one write() call, then fsynced. The kubelet reads it only
    # after the container has exited, so no reader sees a partial write.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


_default = ResultChannel()


def emit_result(obj: Mapping[str, Any]) -> Path:
    """Hand ``obj`` (a small JSON object, at most 4096 bytes encoded) to the operator.

    Raises ``ValueError`` naming the size when too large, ``TypeError`` when not a
    JSON-serialisable dict. Calling it again replaces the previous result.
    """
    return _default.emit(obj)


def attach_output_summary(summary: Mapping[str, Any]) -> Path:
    """Attach a finalised manifest's summary to this pod's result (done by ``finalize_manifest``)."""
    return _default.attach_output(summary)
