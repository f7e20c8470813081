from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from airflow_provider_kbatch.devcluster.processnode.podenv import ObjectSource
from airflow_provider_kbatch.devcluster.processnode.volumes import (
    VolumeContext,
    VolumeError,
    claim_name,
    container_mounts,
    prepare_volumes,
    token_requests,
)


def _pod(volumes: list[dict[str, object]], security: dict[str, object] | None = None) -> dict[str, object]:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"a": "1"}},
        "spec": {"volumes": volumes, "securityContext": security or {}, "containers": [{"name": "c"}]},
    }


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_config_map_and_secret_files(tmp_path: Path) -> None:
    objects = ObjectSource(
        config_maps={
            "cm": {
                "data": {"a.txt": "A", "b.txt": "B"},
                "binaryData": {"bin": base64.b64encode(b"\0\1").decode()},
            }
        },
        secrets={"s": {"data": {"key": base64.b64encode(b"\xff\xfe").decode()}}},
    )
    pod = _pod(
        [
            {"name": "all", "configMap": {"name": "cm"}},
            {
                "name": "some",
                "configMap": {"name": "cm", "items": [{"key": "a.txt", "path": "dir/x", "mode": 0o600}]},
            },
            {"name": "sec", "secret": {"secretName": "s", "defaultMode": 0o400}},
            {"name": "opt", "secret": {"secretName": "absent", "optional": True}},
        ]
    )
    volumes = prepare_volumes(VolumeContext(pod=pod, pod_dir=tmp_path, objects=objects))
    root = tmp_path / "volumes"
    assert sorted(os.listdir(root / "all")) == ["a.txt", "b.txt", "bin"]
    assert (root / "all" / "bin").read_bytes() == b"\0\1"
    assert (root / "some" / "dir" / "x").read_text() == "A"
    assert _mode(root / "some" / "dir" / "x") == 0o600
    assert (root / "sec" / "key").read_bytes() == b"\xff\xfe"
    assert _mode(root / "sec" / "key") == 0o400
    assert os.listdir(root / "opt") == []
    assert all(v.read_only for v in volumes.values())


def test_missing_config_map_or_key_is_retried(tmp_path: Path) -> None:
    objects = ObjectSource(config_maps={"cm": {"data": {"a": "1"}}})
    with pytest.raises(VolumeError, match="not found"):
        prepare_volumes(
            VolumeContext(_pod([{"name": "v", "configMap": {"name": "nope"}}]), tmp_path, objects)
        )
    items = {"name": "cm", "items": [{"key": "b", "path": "b"}]}
    with pytest.raises(VolumeError, match="key 'b'"):
        prepare_volumes(VolumeContext(_pod([{"name": "v", "configMap": items}]), tmp_path, objects))


def test_projected_token_downward_api(tmp_path: Path) -> None:
    projected = {
        "sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
            {"downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
        ]
    }
    pod = _pod([{"name": "api", "projected": projected}])
    assert token_requests(pod, "") == {("", 3607)}
    ctx = VolumeContext(pod, tmp_path, ObjectSource(), tokens={("", 3607): "TOKEN"})
    prepare_volumes(ctx)
    assert (tmp_path / "volumes" / "api" / "token").read_text() == "TOKEN"
    assert (tmp_path / "volumes" / "api" / "labels").read_text() == 'a="1"'


def test_empty_dir_claim_and_host_path(tmp_path: Path) -> None:
    claim_dir = tmp_path / "claim"
    claim_dir.mkdir()
    host = tmp_path / "host" / "made"
    pod = _pod(
        [
            {"name": "scratch", "emptyDir": {}},
            {"name": "data", "persistentVolumeClaim": {"claimName": "data", "readOnly": True}},
            {"name": "eph", "ephemeral": {"volumeClaimTemplate": {}}},
            {"name": "h", "hostPath": {"path": str(host), "type": "DirectoryOrCreate"}},
        ]
    )
    assert claim_name(pod, pod["spec"]["volumes"][2]) == "p-eph"  # type: ignore[index]
    ctx = VolumeContext(
        pod, tmp_path, ObjectSource(), claim_paths={"data": str(claim_dir), "p-eph": str(claim_dir)}
    )
    volumes = prepare_volumes(ctx)
    assert _mode(Path(volumes["scratch"].path)) == 0o777
    assert volumes["data"].path == str(claim_dir) and volumes["data"].read_only
    assert host.is_dir()


def test_unbound_claim_and_unsupported_type(tmp_path: Path) -> None:
    with pytest.raises(VolumeError, match="not bound"):
        prepare_volumes(
            VolumeContext(
                _pod([{"name": "d", "persistentVolumeClaim": {"claimName": "x"}}]), tmp_path, ObjectSource()
            )
        )
    with pytest.raises(VolumeError, match="not supported"):
        prepare_volumes(
            VolumeContext(_pod([{"name": "n", "nfs": {"server": "s"}}]), tmp_path, ObjectSource())
        )


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_fs_group_ownership(tmp_path: Path) -> None:
    claim_dir = tmp_path / "claim"
    (claim_dir / "sub").mkdir(parents=True)
    (claim_dir / "sub" / "f").write_text("x")
    os.chmod(claim_dir / "sub" / "f", 0o600)
    pod = _pod([{"name": "d", "persistentVolumeClaim": {"claimName": "c"}}], {"fsGroup": 2345})
    prepare_volumes(VolumeContext(pod, tmp_path, ObjectSource(), claim_paths={"c": str(claim_dir)}))
    f = (claim_dir / "sub" / "f").stat()
    assert f.st_gid == 2345 and stat.S_IMODE(f.st_mode) == 0o660
    d = (claim_dir / "sub").stat()
    assert d.st_gid == 2345 and d.st_mode & stat.S_ISGID


def test_container_mounts_sub_path_and_read_only(tmp_path: Path) -> None:
    claim_dir = tmp_path / "claim"
    claim_dir.mkdir()
    (claim_dir / "file.txt").write_text("x")
    pod = _pod([{"name": "d", "persistentVolumeClaim": {"claimName": "c"}}])
    volumes = prepare_volumes(VolumeContext(pod, tmp_path, ObjectSource(), claim_paths={"c": str(claim_dir)}))
    container = {
        "volumeMounts": [
            {"name": "d", "mountPath": "/data"},
            {"name": "d", "mountPath": "/out", "subPath": "runs/$(RUN)"},
            {"name": "d", "mountPath": "/in", "subPathExpr": "runs/$(RUN)", "readOnly": True},
            {"name": "d", "mountPath": "/etc/one.txt", "subPath": "file.txt"},
        ]
    }
    mounts = container_mounts(container, volumes, {"RUN": "r1"})
    by_target = {m.target: m for m in mounts}
    assert by_target["/data"].source == str(claim_dir) and not by_target["/data"].read_only
    assert by_target["/out"].source == str(claim_dir / "runs/$(RUN)")  # subPath is not expanded
    assert by_target["/in"].source == str(claim_dir / "runs/r1") and by_target["/in"].read_only
    assert (claim_dir / "runs" / "r1").is_dir()
    assert by_target["/etc/one.txt"].is_file


@pytest.mark.parametrize("sub", ["../escape", "/abs"])
def test_sub_path_escape_is_refused(tmp_path: Path, sub: str) -> None:
    pod = _pod([{"name": "e", "emptyDir": {}}])
    volumes = prepare_volumes(VolumeContext(pod, tmp_path, ObjectSource()))
    with pytest.raises(VolumeError):
        container_mounts({"volumeMounts": [{"name": "e", "mountPath": "/x", "subPath": sub}]}, volumes, {})
