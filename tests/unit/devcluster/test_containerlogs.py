from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_kbatch.devcluster.processnode.containerlogs import (
    MAX_LINE,
    LogWriter,
    RenderState,
    parse,
    read_entries,
    render,
    since_threshold,
    tail_offset,
    timestamp,
)


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    return tmp_path / "c.log"


def _write(path: Path, *chunks: tuple[str, bytes]) -> LogWriter:
    writer = LogWriter(path)
    for stream, data in chunks:
        writer.write(stream, data)
    return writer


def test_timestamp_is_fixed_width() -> None:
    assert timestamp(1_000_000_000_000_000_005) == "2001-09-09T01:46:40.000000005Z"


def test_writer_splits_lines_per_stream(log_file: Path) -> None:
    writer = _write(log_file, ("stdout", b"a\nb"), ("stderr", b"err\n"), ("stdout", b"c\n"))
    writer.close()
    entries, offset = read_entries(log_file, 0)
    assert [(e.stream, e.full, e.content) for e in entries] == [
        ("stdout", True, b"a"),
        ("stderr", True, b"err"),
        ("stdout", True, b"bc"),
    ]
    assert offset == log_file.stat().st_size
    assert render(entries, RenderState()) == b"a\nerr\nbc\n"


def test_unterminated_output_is_not_given_a_newline(log_file: Path) -> None:
    writer = _write(log_file, ("stdout", b"no newline"))
    writer.close()
    entries, _ = read_entries(log_file, 0)
    assert render(entries, RenderState()) == b"no newline"
    assert writer.tail_text() == "no newline"


def test_long_lines_become_partial_entries(log_file: Path) -> None:
    writer = _write(log_file, ("stdout", b"x" * (MAX_LINE * 2 + 10) + b"\n"))
    writer.close()
    entries, _ = read_entries(log_file, 0)
    assert [e.full for e in entries] == [False, False, True]
    out = render(entries, RenderState(timestamps=True))
    assert out.count(b"Z ") == 1  # a timestamp only where the line starts
    assert out.endswith(b"x\n")


def test_tail_lines(log_file: Path) -> None:
    writer = _write(log_file, ("stdout", b"".join(b"line %d\n" % i for i in range(10))))
    writer.close()
    entries, _ = read_entries(log_file, tail_offset(log_file, 3))
    assert render(entries, RenderState()) == b"line 7\nline 8\nline 9\n"
    assert tail_offset(log_file, 100) == 0
    assert tail_offset(log_file, 0) == log_file.stat().st_size


def test_limit_bytes_across_reads(log_file: Path) -> None:
    writer = _write(log_file, ("stdout", b"hello\nworld\n"))
    writer.close()
    entries, _ = read_entries(log_file, 0)
    state = RenderState(limit=8)
    assert render(entries[:1], state) == b"hello\n"
    assert render(entries[1:], state) == b"wo"
    assert state.exhausted


def test_since_filters_by_timestamp() -> None:
    old = parse(b"2020-01-01T00:00:00.000000000Z stdout F old")
    new = parse(b"2030-01-01T00:00:00.000000000Z stdout F new")
    assert old is not None and new is not None
    since = since_threshold(None, "2025-01-01T00:00:00Z", 0)
    assert (
        render([old, new], RenderState(since=since, timestamps=True))
        == b"2030-01-01T00:00:00.000000000Z new\n"
    )
    assert since_threshold(10, None, 20 * 10**9) == timestamp(10 * 10**9)


def test_partial_line_at_end_of_read_is_left_for_later(log_file: Path) -> None:
    log_file.write_bytes(b"2020-01-01T00:00:00.000000000Z stdout F one\n2020-01-01T00:00:00.0")
    entries, offset = read_entries(log_file, 0)
    assert [e.content for e in entries] == [b"one"]
    assert offset == len(b"2020-01-01T00:00:00.000000000Z stdout F one\n")
