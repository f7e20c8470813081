"""Crash-safe file writes: a reader sees the old content or the new one, never a torn file.

The recipe: write a temporary file in the *same directory* (so the rename stays on one
filesystem), ``fsync`` it, ``os.replace`` it over the target, then ``fsync`` the directory so the
rename itself survives a node crash.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

TMP_PREFIX = ".kbatch-tmp-"


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Flush a directory entry change (a rename, a new file) to stable storage.

    Some filesystems (and platforms) do not support fsync on a directory; that is ignored.
    """
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str], *, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Write the new content of ``path`` to the file this yields (parent directories are created).

    On a clean exit the file is fsynced and replaces ``path``; on an exception it is removed and
    ``path`` is untouched. ``mode`` is the new file's permission bits (before the umask).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f"{TMP_PREFIX}{target.name}-{os.getpid()}-{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(target.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644) -> Path:
    """Atomically replace ``path`` with ``data`` (parent directories are created)."""
    with atomic_file(path, mode=mode) as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))
