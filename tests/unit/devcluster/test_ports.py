from __future__ import annotations

import random
import socket
from pathlib import Path

import pytest

from airflow_provider_kbatch.devcluster import ports


def test_ephemeral_range_is_read_from_the_kernel_file(tmp_path: Path) -> None:
    f = tmp_path / "range"
    f.write_text("40000\t50000\n")
    assert ports.ephemeral_range(f) == (40000, 50000)


@pytest.mark.parametrize("content", ["", "garbage", "50000 40000"])
def test_unreadable_or_inverted_range_falls_back_to_linux_default(tmp_path: Path, content: str) -> None:
    f = tmp_path / "range"
    f.write_text(content)
    assert ports.ephemeral_range(f) == (32768, 60999)
    assert ports.ephemeral_range(tmp_path / "missing") == (32768, 60999)


def test_candidates_exclude_the_ephemeral_range() -> None:
    candidates = ports.candidate_ports((32768, 60999))
    assert min(candidates) == ports.LOWEST
    assert max(candidates) == 65535
    assert 32767 in candidates and 61000 in candidates
    assert not any(32768 <= p <= 60999 for p in candidates)


def test_free_port_is_outside_the_ephemeral_range_and_bindable() -> None:
    low, high = ports.ephemeral_range()
    for _ in range(20):
        port = ports.free_port()
        assert not low <= port <= high
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_free_port_skips_ports_in_use_and_ports_to_avoid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "candidate_ports", lambda _r: [20001, 20002, 20003])
    with socket.socket() as busy:
        try:
            busy.bind(("127.0.0.1", 20001))
        except OSError:
            pytest.skip("port 20001 is taken on this machine")
        busy.listen()
        seen = {ports.free_port(avoid={20002}, rng=random.Random(seed)) for seed in range(30)}
    assert seen == {20003}


def test_free_ports_are_distinct() -> None:
    chosen = ports.free_ports([f"c{i}" for i in range(12)])
    assert len(set(chosen.values())) == 12
