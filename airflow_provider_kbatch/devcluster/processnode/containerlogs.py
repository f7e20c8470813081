"""Container log files in the CRI format, and reading them the way the kubelet serves them.

Each line of ``<pod dir>/<container>.log`` is ``<RFC3339Nano> <stdout|stderr> <F|P> <content>``
(``P``: a partial line, continued by the next entry of the same stream), as containerd and CRI-O
write them. The previous attempt of a restarted container is ``<container>.log.1``.

``read_entries`` + ``render`` implement ``tailLines``, ``sinceSeconds``/``sinceTime``,
``timestamps`` and ``limitBytes`` of ``/containerLogs`` (``pkg/kubelet/kuberuntime/logs``).
"""

from __future__ import annotations

import asyncio
import datetime
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from airflow_provider_kbatch.spec.times import parse_time

MAX_LINE = 16 * 1024  # the runtime splits longer lines into partial entries
TAIL_BLOCK = 64 * 1024


def timestamp(ns: int) -> str:
    """RFC3339 with fixed nanoseconds (the kubelet's ``RFC3339NanoFixed``), UTC."""
    seconds, nanos = divmod(ns, 10**9)
    base = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{nanos:09d}Z"


def log_path(pod_dir: Path, container: str, *, previous: bool = False) -> Path:
    return pod_dir / (f"{container}.log.1" if previous else f"{container}.log")


class LogWriter:
    """Appends a container's stdout and stderr to its log file, one CRI entry per line.

    Keeps the last lines in memory for ``FallbackToLogsOnError`` and wakes followers on writes.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self._partial: dict[str, bytes] = {"stdout": b"", "stderr": b""}
        self.tail: deque[bytes] = deque(maxlen=80)
        self.changed = asyncio.Event()
        self.closed = False

    def _emit(self, stream: str, content: bytes, full: bool) -> bytes:
        if full:
            self.tail.append(content + b"\n")
        tag = b"F" if full else b"P"
        return b"%s %s %s %s\n" % (timestamp(time.time_ns()).encode(), stream.encode(), tag, content)

    def write(self, stream: str, data: bytes) -> None:
        buf = self._partial[stream] + data
        out = []
        while True:
            newline = buf.find(b"\n", 0, MAX_LINE + 1)
            if newline != -1:
                out.append(self._emit(stream, buf[:newline], True))
                buf = buf[newline + 1 :]
            elif len(buf) > MAX_LINE:
                out.append(self._emit(stream, buf[:MAX_LINE], False))
                buf = buf[MAX_LINE:]
            else:
                break
        self._partial[stream] = buf
        if out:
            os.write(self._fd, b"".join(out))
            self._wake()

    def close(self) -> None:
        """Flush unterminated output (as a partial entry: no newline is invented) and close."""
        if self.closed:
            return
        out = [self._emit(s, rest, False) for s, rest in self._partial.items() if rest]
        for stream, rest in self._partial.items():
            if rest:
                self.tail.append(rest)
                self._partial[stream] = b""
        if out:
            os.write(self._fd, b"".join(out))
        os.close(self._fd)
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    def tail_text(self) -> str:
        return b"".join(self.tail).decode("utf-8", "replace")


@dataclass(frozen=True)
class Entry:
    ts: str
    stream: str
    full: bool
    content: bytes


def parse(line: bytes) -> Entry | None:
    """One CRI log line (without its newline); ``None`` when malformed."""
    parts = line.split(b" ", 3)
    if len(parts) < 3:
        return None
    content = parts[3] if len(parts) == 4 else b""
    return Entry(parts[0].decode(), parts[1].decode(), parts[2] == b"F", content)


def tail_offset(path: Path, lines: int) -> int:
    """Byte offset where the last ``lines`` entries of the file start."""
    if lines <= 0:
        return os.path.getsize(path)
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        pos = end
        count = 0
        # The file ends with a newline; the first one from the end closes the last entry.
        while pos > 0:
            step = min(TAIL_BLOCK, pos)
            pos -= step
            f.seek(pos)
            block = f.read(step)
            for i in range(len(block) - 1, -1, -1):
                if block[i] == 0x0A and pos + i != end - 1:
                    count += 1
                    if count == lines:
                        return pos + i + 1
        return 0


def read_entries(path: Path, offset: int) -> tuple[list[Entry], int]:
    """Complete entries from ``offset``; returns them and the offset after the last one."""
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n")
    if end == -1:
        return [], offset
    entries = [e for e in (parse(line) for line in data[:end].split(b"\n")) if e is not None]
    return entries, offset + end + 1


@dataclass
class RenderState:
    """Carries ``limitBytes`` and partial-line continuity across reads of a followed log."""

    timestamps: bool = False
    since: str | None = None
    limit: int | None = None
    sent: int = 0
    at_line_start: bool = True

    @property
    def exhausted(self) -> bool:
        return self.limit is not None and self.sent >= self.limit


def render(entries: Iterable[Entry], state: RenderState) -> bytes:
    """The bytes ``kubectl logs`` shows for ``entries``; timestamps only at the start of a line."""
    out = bytearray()
    for entry in entries:
        if state.since is not None and entry.ts < state.since:
            continue
        if state.timestamps and state.at_line_start:
            out += entry.ts.encode() + b" "
        out += entry.content
        if entry.full:
            out += b"\n"
        state.at_line_start = entry.full
    if state.limit is not None:
        room = max(0, state.limit - state.sent)
        out = out[:room]
    state.sent += len(out)
    return bytes(out)


def since_threshold(since_seconds: int | None, since_time: str | None, now_ns: int) -> str | None:
    """The smallest timestamp to show, comparable as a string with stored ones."""
    if since_seconds is not None:
        return timestamp(now_ns - since_seconds * 10**9)
    if since_time:
        parsed = parse_time(since_time)
        return timestamp(int(parsed.timestamp()) * 10**9 + parsed.microsecond * 1000)
    return None


def iter_chunks(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]
