"""Per-index checkpoints that survive pod retries and Airflow retries.

They live in :func:`runtime.checkpoint_dir` (``$KBATCH_CHECKPOINT_DIR/<logical index>`` on the
workspace volume). A checkpoint is either a JSON value (``<name>.json``) or raw bytes
(``<name>.bin``); each save is atomic (temporary file in the same directory, fsync, rename, fsync
of the directory), so an index killed mid-save finds the previous checkpoint, never a torn one::

    from airflow_provider_kbatch.runtime import checkpoint

    state = checkpoint.load(default={"next_row": 0})
    for row in range(state["next_row"], total):
        work(row)
        if row % 1000 == 0:
            checkpoint.save({"next_row": row + 1})
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airflow_provider_kbatch.runtime import env as kenv
from airflow_provider_kbatch.runtime.atomic import atomic_write_bytes, fsync_dir

DEFAULT_NAME = "state"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_MISSING: Any = object()


class Checkpoint:
    """A named checkpoint in a directory (default: this index's :func:`runtime.checkpoint_dir`)."""

    def __init__(
        self,
        name: str = DEFAULT_NAME,
        *,
        directory: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(
                f"checkpoint name {name!r}: expected 1-128 characters of letters, digits, '_', '.', '-', "
                "not starting with '.' or '-'"
            )
        self.name = name
        self.directory = Path(directory) if directory is not None else kenv.checkpoint_dir(env)

    @property
    def json_path(self) -> Path:
        return self.directory / f"{self.name}.json"

    @property
    def bytes_path(self) -> Path:
        return self.directory / f"{self.name}.bin"

    def _current(self) -> Path | None:
        """The newest of ``<name>.json`` / ``<name>.bin`` (both exist only after a crash mid-save)."""
        found = []
        for path in (self.json_path, self.bytes_path):
            with contextlib.suppress(FileNotFoundError):
                found.append((path.stat().st_mtime_ns, path))
        return max(found)[1] if found else None

    def exists(self) -> bool:
        """Whether a checkpoint has been saved."""
        return self._current() is not None

    def load(self, default: Any = _MISSING) -> Any:
        """The saved value (JSON value or ``bytes``); ``default`` when none, else ``FileNotFoundError``."""
        path = self._current()
        if path is None:
            if default is _MISSING:
                raise FileNotFoundError(f"no checkpoint {self.name!r} in {self.directory}")
            return default
        data = path.read_bytes()
        if path == self.bytes_path:
            return data
        try:
            return json.loads(data)
        except ValueError as exc:
            raise ValueError(f"checkpoint {path}: not valid JSON ({exc})") from None

    def save(self, obj: Any) -> Path:
        """Atomically save ``obj``: ``bytes``-like as raw bytes, anything else as JSON."""
        if isinstance(obj, (bytes, bytearray, memoryview)):
            target, other, data = self.bytes_path, self.json_path, bytes(obj)
        else:
            try:
                data = json.dumps(obj, ensure_ascii=False, allow_nan=False).encode("utf-8")
            except (TypeError, ValueError) as exc:
                raise TypeError(f"checkpoint {self.name!r}: value is not JSON-serialisable ({exc})") from None
            target, other = self.json_path, self.bytes_path
        atomic_write_bytes(target, data)
        if other.exists():  # the value changed kind: drop the old one
            with contextlib.suppress(FileNotFoundError):
                other.unlink()
            fsync_dir(self.directory)
        return target

    def clear(self) -> None:
        """Delete the checkpoint (both kinds), e.g. once the index's output is published."""
        for path in (self.json_path, self.bytes_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        fsync_dir(self.directory)


def load(name: str = DEFAULT_NAME, default: Any = _MISSING) -> Any:
    """:meth:`Checkpoint.load` of this index's checkpoint ``name``."""
    return Checkpoint(name).load(default)


def save(obj: Any, name: str = DEFAULT_NAME) -> Path:
    """:meth:`Checkpoint.save` to this index's checkpoint ``name``."""
    return Checkpoint(name).save(obj)


def exists(name: str = DEFAULT_NAME) -> bool:
    """:meth:`Checkpoint.exists` for this index's checkpoint ``name``."""
    return Checkpoint(name).exists()
