"""Process trees with psutil, for stopping what a deployment started (used by
:meth:`airflow_provider_kbatch.devcluster.airflowdeploy.AirflowDeployment.stop`): whether a
process is alive (a zombie counts as gone), waiting until a set of processes is gone while
reaping our own children, de-duplication by pid, and a short command line for messages.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterable, Sequence

import psutil


def wait_gone(
    procs: Sequence[psutil.Process], timeout: float, *, reap: Iterable[subprocess.Popen[bytes]]
) -> list[psutil.Process]:
    """Wait until none of ``procs`` is alive (zombies count as gone); return those still alive."""
    deadline = time.monotonic() + timeout
    while True:
        for child in reap:  # our own children: reap them so they do not linger as zombies
            child.poll()
        left = [p for p in procs if alive(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def unique(procs: Iterable[psutil.Process]) -> list[psutil.Process]:
    return list({p.pid: p for p in procs}.values())


def cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())[:160]
    except psutil.Error:
        return "?"


def alive(proc: psutil.Process) -> bool:
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False
