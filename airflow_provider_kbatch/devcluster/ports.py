"""Listening ports for the development cluster and the test harness.

A port taken with ``bind(("127.0.0.1", 0))`` comes from the kernel's ephemeral range, the same
range the kernel hands to *outgoing* connections. Between choosing such a port and the component
binding it, any client connection on the machine (another cluster's controller-manager talking to
its API server, for one) may take it as its local port, and the component dies with "address
already in use". So ports are chosen outside ``net.ipv4.ip_local_port_range``, where the kernel
never assigns anything by itself, and checked free by binding them.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Collection
from pathlib import Path

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 10000  # stay clear of well-known and commonly configured service ports
HIGHEST = 65535
_DEFAULT_EPHEMERAL = (32768, 60999)


def ephemeral_range(path: Path = EPHEMERAL_RANGE_FILE) -> tuple[int, int]:
    """The kernel's ephemeral port range, inclusive; Linux's default when it cannot be read."""
    try:
        low, high = (int(part) for part in path.read_text().split())
    except (OSError, ValueError):
        return _DEFAULT_EPHEMERAL
    return (low, high) if low <= high else _DEFAULT_EPHEMERAL


def candidate_ports(ephemeral: tuple[int, int]) -> list[int]:
    """Every port in [LOWEST, HIGHEST] outside ``ephemeral``."""
    low, high = ephemeral
    return [port for port in range(LOWEST, HIGHEST + 1) if not low <= port <= high]


def _bindable(port: int, host: str) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(
    *,
    avoid: Collection[int] = (),
    host: str = "127.0.0.1",
    rng: random.Random | None = None,
    attempts: int = 200,
) -> int:
    """A port that is free now and that the kernel will not hand to an outgoing connection.

    ``avoid`` holds ports already chosen but not yet bound. When no such port is found (a machine
    whose ephemeral range covers everything) it falls back to a kernel-chosen port.
    """
    pick = rng or random.SystemRandom()
    candidates = candidate_ports(ephemeral_range())
    for _ in range(attempts if candidates else 0):
        port = pick.choice(candidates)
        if port not in avoid and _bindable(port, host):
            return port
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_ports(names: Collection[str], *, host: str = "127.0.0.1") -> dict[str, int]:
    """Distinct free ports, one per name."""
    chosen: dict[str, int] = {}
    for name in names:
        chosen[name] = free_port(avoid=set(chosen.values()), host=host)
    return chosen
