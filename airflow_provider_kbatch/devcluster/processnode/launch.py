"""The command line that starts one container. Pure.

A container is ``unshare --mount --uts`` (a private mount namespace, propagation private, and its
own hostname) running a short ``sh`` script that bind-mounts the volumes at their real
``mountPath`` (``mount --bind -o ro`` for read-only mounts), changes to the working directory and
``exec``s ``setpriv`` to drop to the pod's user, which ``exec``s the command. Every step ``exec``s
the next, so the process the node started *is* the container's main process, in its own session
and process group.

The script's standard input is the write end of a pipe the node reads: setup failures are written
there and end the script with code 128 (the kubelet's ``StartError``); on success the script
replaces it with ``/dev/null`` (a container's stdin) before the ``exec``, so the node sees a clean
end of file and knows the command was started.

Running as a non-root uid while the interpreter lives under ``/root`` (mode 700) needs
``CAP_DAC_READ_SEARCH`` as an ambient capability: the process can read every file on the machine.
A development tool, not a sandbox.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

START_ERROR_EXIT = 128
FORBIDDEN_TARGETS = ("/proc", "/sys", "/dev/pts")


@dataclass(frozen=True)
class Mount:
    """A bind mount: ``source`` on the host appears at ``target`` in the container."""

    source: str
    target: str
    read_only: bool = False
    is_file: bool = False


@dataclass(frozen=True)
class Identity:
    """Who the container runs as (``None``: keep the node's own uid or gid)."""

    uid: int | None = None
    gid: int | None = None
    groups: tuple[int, ...] = ()


@dataclass(frozen=True)
class Tools:
    """Absolute paths of the host tools (a container's ``PATH`` may not have them)."""

    unshare: str = "/usr/bin/unshare"
    sh: str = "/bin/sh"
    mount: str = "/usr/bin/mount"
    mkdir: str = "/usr/bin/mkdir"
    hostname: str | None = "/usr/bin/hostname"
    setpriv: str = "/usr/bin/setpriv"
    as_root: bool = True


class LaunchError(ValueError):
    pass


def check_target(target: str) -> str:
    """Normalise a mount target; refuse relative paths, ``..``, ``/`` and kernel filesystems."""
    if not target.startswith("/"):
        raise LaunchError(f"mountPath {target!r} is not absolute")
    if ".." in target.split("/"):
        raise LaunchError(f"mountPath {target!r} contains '..'")
    norm = os.path.normpath(target)
    if norm == "/":
        raise LaunchError("mountPath '/' would hide the host's root filesystem")
    for forbidden in FORBIDDEN_TARGETS:
        if norm == forbidden or norm.startswith(forbidden + "/"):
            raise LaunchError(f"mountPath {target!r} is under {forbidden}: refused by the process node")
    return norm


def order_mounts(mounts: Sequence[Mount]) -> list[Mount]:
    """Parents before children (containerd sorts mounts by depth of the destination)."""
    return sorted(mounts, key=lambda m: m.target.rstrip("/").count("/"))


def _q(value: str) -> str:
    return shlex.quote(value)


def _fail(message: str) -> str:
    return f"{{ echo {_q('kbatch-node: ' + message)} >&0; exit {START_ERROR_EXIT}; }}"


def setup_script(
    tools: Tools, mounts: Sequence[Mount], workdir: str, hostname: str | None, identity: Identity
) -> str:
    """The ``sh -c`` script; the command and its arguments are the script's ``"$@"``."""
    lines = []
    if hostname and tools.hostname:
        lines.append(f"{tools.hostname} {_q(hostname)} || {_fail('cannot set hostname ' + hostname)}")
    for mount in order_mounts(mounts):
        src, dst = _q(mount.source), _q(mount.target)
        if mount.is_file:
            parent = _q(os.path.dirname(mount.target) or "/")
            lines.append(
                f"[ -e {dst} ] || {{ {tools.mkdir} -p {parent} && : > {dst}; }} || "
                + _fail(f"cannot create mount point {mount.target}")
            )
        else:
            lines.append(
                f"[ -d {dst} ] || {tools.mkdir} -p {dst} || {_fail('cannot create ' + mount.target)}"
            )
        options = "-o ro " if mount.read_only else ""
        lines.append(
            f"{tools.mount} --bind {options}{src} {dst} || "
            + _fail(f"cannot mount {mount.source} at {mount.target}")
        )
    wd = _q(workdir)
    lines.append(f"[ -d {wd} ] || {tools.mkdir} -p {wd} || {_fail('cannot create workingDir ' + workdir)}")
    lines.append(f"cd {wd} || {_fail('cannot enter workingDir ' + workdir)}")
    lines.append("exec 0</dev/null")
    lines.append("exec " + " ".join(_q(a) for a in privilege_argv(tools, identity)) + ' "$@"')
    return "\n".join(lines)


def privilege_argv(tools: Tools, identity: Identity) -> list[str]:
    """``setpriv`` arguments that switch to ``identity`` (nothing when there is nothing to switch)."""
    if not tools.as_root or (identity.uid is None and identity.gid is None and not identity.groups):
        return []
    argv = [tools.setpriv]
    uid = identity.uid if identity.uid is not None else 0
    gid = identity.gid if identity.gid is not None else 0
    argv += [f"--reuid={uid}", f"--regid={gid}"]
    if identity.groups:
        argv.append("--groups=" + ",".join(str(g) for g in identity.groups))
    else:
        argv.append("--clear-groups")
    if uid != 0:
        argv += ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
    argv.append("--")
    return argv


def launch_argv(
    tools: Tools,
    command: Sequence[str],
    mounts: Sequence[Mount],
    *,
    workdir: str,
    hostname: str | None,
    identity: Identity,
) -> list[str]:
    """The full argv: ``unshare ... sh -c SCRIPT sh COMMAND...``."""
    if not command:
        raise LaunchError("container has no command (the process node ignores images and their entrypoints)")
    unshare = [tools.unshare, "--mount", "--propagation", "private"]
    if hostname and tools.hostname:
        unshare.append("--uts")
    if not tools.as_root:
        unshare[1:1] = ["--user", "--map-root-user"]
    script = setup_script(tools, mounts, workdir, hostname, identity)
    return [*unshare, "--", tools.sh, "-c", script, "kbatch-container", *command]


NOBODY = 65534


def identity_for(pod: Mapping[str, Any], container: Mapping[str, Any]) -> Identity:
    """The container's user from its and the pod's ``securityContext``.

    ``runAsUser`` without ``runAsGroup`` runs with group 0, like a runtime whose image has no
    passwd entry for the uid. ``runAsNonRoot`` without ``runAsUser`` (the image's user is unknown:
    images are ignored) runs as ``nobody`` (65534). The primary group, ``fsGroup`` and
    ``supplementalGroups`` become the supplementary groups.
    """
    pod_sc = pod.get("spec", {}).get("securityContext") or {}
    sc = container.get("securityContext") or {}

    def pick(key: str) -> Any:
        return sc[key] if sc.get(key) is not None else pod_sc.get(key)

    uid, gid, non_root = pick("runAsUser"), pick("runAsGroup"), pick("runAsNonRoot")
    if uid is None and non_root:
        uid = NOBODY
    if uid == 0 and non_root:
        raise LaunchError("container's runAsUser breaks non-root policy (runAsNonRoot with runAsUser 0)")
    groups = set(int(g) for g in pod_sc.get("supplementalGroups") or [])
    if pod_sc.get("fsGroup") is not None:
        groups.add(int(pod_sc["fsGroup"]))
    if uid is not None and gid is None:
        gid = 0
    if gid is not None:
        groups.add(int(gid))  # containerd lists the primary group among the supplementary ones
    return Identity(
        uid=None if uid is None else int(uid),
        gid=None if gid is None else int(gid),
        groups=tuple(sorted(groups)),
    )
