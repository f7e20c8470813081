from __future__ import annotations

import os
import subprocess

import pytest

from airflow_provider_kbatch.devcluster.processnode.launch import (
    Identity,
    LaunchError,
    Mount,
    Tools,
    check_target,
    identity_for,
    launch_argv,
    order_mounts,
    privilege_argv,
)

TOOLS = Tools()


def test_argv_shape_and_quoting() -> None:
    argv = launch_argv(
        TOOLS,
        ["python", "-c", "print('a b')"],
        [Mount("/src dir", "/data", read_only=True), Mount("/t/file", "/dev/termination-log", is_file=True)],
        workdir="/work dir",
        hostname="pod-0",
        identity=Identity(uid=1000, gid=1000, groups=(2000,)),
    )
    assert argv[:6] == ["/usr/bin/unshare", "--mount", "--propagation", "private", "--uts", "--"]
    assert argv[6:8] == ["/bin/sh", "-c"]
    assert argv[-3:] == ["python", "-c", "print('a b')"]
    script = argv[8]
    assert "/usr/bin/mount --bind -o ro '/src dir' /data" in script
    assert "cd '/work dir'" in script
    assert "exec 0</dev/null" in script
    assert script.rstrip().endswith('-- "$@"')


def test_no_command_is_refused() -> None:
    with pytest.raises(LaunchError, match="no command"):
        launch_argv(TOOLS, [], [], workdir="/", hostname=None, identity=Identity())


def test_privileges() -> None:
    assert privilege_argv(TOOLS, Identity()) == []
    assert privilege_argv(TOOLS, Identity(uid=1000, gid=0)) == [
        "/usr/bin/setpriv",
        "--reuid=1000",
        "--regid=0",
        "--clear-groups",
        "--inh-caps=+dac_read_search",
        "--ambient-caps=+dac_read_search",
        "--",
    ]
    assert "--groups=5,6" in privilege_argv(TOOLS, Identity(uid=0, gid=0, groups=(5, 6)))
    assert "--ambient-caps=+dac_read_search" not in privilege_argv(TOOLS, Identity(uid=0, gid=5))
    assert privilege_argv(Tools(as_root=False), Identity(uid=1000)) == []


@pytest.mark.parametrize("bad", ["relative", "/a/../b", "/", "/proc/x", "/sys", "/dev/pts/1"])
def test_check_target_refuses(bad: str) -> None:
    with pytest.raises(LaunchError):
        check_target(bad)


def test_check_target_normalises() -> None:
    assert check_target("/data//x/") == "/data/x"


def test_mounts_parents_first() -> None:
    mounts = [Mount("a", "/data/sub/x"), Mount("b", "/data"), Mount("c", "/data/sub")]
    assert [m.target for m in order_mounts(mounts)] == ["/data", "/data/sub", "/data/sub/x"]


@pytest.mark.parametrize(
    ("pod_sc", "sc", "identity"),
    [
        ({}, {}, Identity()),
        ({"runAsUser": 1000}, {}, Identity(uid=1000, gid=0, groups=(0,))),
        (
            {"runAsUser": 1000, "runAsGroup": 3000},
            {"runAsUser": 7},
            Identity(uid=7, gid=3000, groups=(3000,)),
        ),
        ({"runAsNonRoot": True}, {}, Identity(uid=65534, gid=0, groups=(0,))),
        ({"fsGroup": 2000, "supplementalGroups": [5]}, {}, Identity(groups=(5, 2000))),
        ({"runAsGroup": 9}, {}, Identity(gid=9, groups=(9,))),
    ],
)
def test_identity_for(pod_sc: dict[str, object], sc: dict[str, object], identity: Identity) -> None:
    pod = {"spec": {"securityContext": pod_sc}}
    assert identity_for(pod, {"securityContext": sc}) == identity


def test_identity_root_with_non_root_policy_fails() -> None:
    with pytest.raises(LaunchError):
        identity_for(
            {"spec": {"securityContext": {"runAsNonRoot": True}}}, {"securityContext": {"runAsUser": 0}}
        )


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for mount namespaces")
def test_script_really_runs(tmp_path: os.PathLike[str]) -> None:
    """The generated script works with the real tools: mounts, read-only, working dir, user."""
    src = os.path.join(tmp_path, "src")
    os.makedirs(src)
    os.chmod(src, 0o777)
    target = os.path.join(tmp_path, "mnt")
    argv = launch_argv(
        Tools(),
        ["sh", "-c", "id -u; pwd; cat data.txt; touch x 2>/dev/null || echo readonly"],
        [Mount(src, target, read_only=True)],
        workdir=target,
        hostname="h",
        identity=Identity(uid=1000, gid=1000),
    )
    with open(os.path.join(src, "data.txt"), "w") as f:
        f.write("payload\n")
    r, w = os.pipe()
    proc = subprocess.run(argv, stdin=w, capture_output=True, text=True, timeout=20)
    os.close(w)
    setup_errors = os.read(r, 4096)
    os.close(r)
    assert setup_errors == b""
    assert proc.stdout.split() == ["1000", target, "payload", "readonly"], proc.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for mount namespaces")
def test_script_reports_setup_failure(tmp_path: os.PathLike[str]) -> None:
    argv = launch_argv(
        Tools(),
        ["true"],
        [Mount(os.path.join(tmp_path, "missing"), os.path.join(tmp_path, "mnt"))],
        workdir="/",
        hostname=None,
        identity=Identity(),
    )
    r, w = os.pipe()
    proc = subprocess.run(argv, stdin=w, capture_output=True, timeout=20)
    os.close(w)
    message = os.read(r, 4096).decode()
    os.close(r)
    assert proc.returncode == 128
    assert "cannot mount" in message
