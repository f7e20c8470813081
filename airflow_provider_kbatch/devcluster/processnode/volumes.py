"""Pod volumes as directories on the host, and the bind mounts each container gets.

Per pod, under ``<pod dir>/volumes/<volume>``: ``emptyDir`` (mode 0777, removed when the pod
stops), ``configMap``, ``secret``, ``downwardAPI`` and ``projected`` (files written once at start,
``items``/``defaultMode``/``mode`` honoured; later changes to the objects are not propagated).
``persistentVolumeClaim`` and ``ephemeral`` claims mount the bound PersistentVolume's ``hostPath``
or ``local.path``; ``hostPath`` mounts the path itself (``type`` checked or created like the
kubelet). With a pod ``fsGroup`` the writable volumes get the kubelet's ownership treatment
(group ``fsGroup``, group read/write, setgid directories), the read-only ones group read.

The API lookups (ConfigMaps, Secrets, claims, service-account tokens) happen in the caller; this
module only touches the local filesystem.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_kbatch.devcluster.processnode.launch import Mount, check_target
from airflow_provider_kbatch.devcluster.processnode.podenv import (
    ConfigError,
    ObjectSource,
    expand,
    field_ref_value,
    resource_field_value,
)

DEFAULT_MODE = 0o644
RW_MASK, RO_MASK, EXEC_MASK = 0o660, 0o440, 0o110
MATERIALISED = ("emptyDir", "configMap", "secret", "downwardAPI", "projected")
SUPPORTED = (*MATERIALISED, "persistentVolumeClaim", "ephemeral", "hostPath")


class VolumeError(Exception):
    """A volume cannot be set up yet (the kubelet's ``FailedMount``); the node retries."""


@dataclass(frozen=True)
class Volume:
    name: str
    path: str
    read_only: bool = False


def claim_name(pod: Mapping[str, Any], volume: Mapping[str, Any]) -> str | None:
    """The PVC a volume uses: its own claim, or ``<pod>-<volume>`` for a generic ephemeral volume."""
    if "persistentVolumeClaim" in volume:
        return str(volume["persistentVolumeClaim"]["claimName"])
    if "ephemeral" in volume:
        return f"{pod['metadata']['name']}-{volume['name']}"
    return None


def token_requests(pod: Mapping[str, Any], default_audience: str) -> set[tuple[str, int]]:
    """(audience, expirationSeconds) of every projected service-account token of the pod."""
    out = set()
    for volume in pod.get("spec", {}).get("volumes") or []:
        for source in (volume.get("projected") or {}).get("sources") or []:
            token = source.get("serviceAccountToken")
            if token:
                out.add(
                    (token.get("audience") or default_audience, int(token.get("expirationSeconds") or 3600))
                )
    return out


def _safe_join(root: str, relative: str, what: str) -> str:
    if relative.startswith("/") or ".." in relative.split("/"):
        raise VolumeError(f"{what} {relative!r} must be relative and must not contain '..'")
    return os.path.join(root, relative) if relative else root


def _write_files(root: Path, files: Iterable[tuple[str, bytes, int]], fs_group: int | None) -> None:
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    for relative, content, mode in files:
        target = Path(_safe_join(str(root), relative, "item path"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        if fs_group is not None:
            os.chown(target, -1, fs_group)
            mode |= RO_MASK
        target.chmod(mode)


def _key_files(
    data: Mapping[str, bytes] | None,
    spec: Mapping[str, Any],
    default_mode: int,
    what: str,
) -> list[tuple[str, bytes, int]]:
    if data is None:
        if spec.get("optional"):
            return []
        raise VolumeError(f"{what} not found")
    items = spec.get("items")
    if not items:
        return [(key, value, default_mode) for key, value in data.items()]
    out = []
    for item in items:
        if item["key"] not in data:
            if spec.get("optional"):
                continue
            raise VolumeError(f"key {item['key']!r} not found in {what}")
        out.append((item["path"], data[item["key"]], int(item.get("mode") or default_mode)))
    return out


def _downward_files(
    pod: Mapping[str, Any],
    items: Iterable[Mapping[str, Any]],
    default_mode: int,
    allocatable: Mapping[str, str],
) -> list[tuple[str, bytes, int]]:
    out = []
    for item in items:
        try:
            if "fieldRef" in item:
                value = field_ref_value(pod, item["fieldRef"]["fieldPath"])
            else:
                ref = item["resourceFieldRef"]
                value = resource_field_value(pod, ref.get("containerName", ""), ref, allocatable)
        except ConfigError as err:
            raise VolumeError(str(err)) from err
        out.append((item["path"], value.encode(), int(item.get("mode") or default_mode)))
    return out


def _projected_files(
    pod: Mapping[str, Any],
    spec: Mapping[str, Any],
    objects: ObjectSource,
    tokens: Mapping[tuple[str, int], str],
    default_audience: str,
    allocatable: Mapping[str, str],
) -> list[tuple[str, bytes, int]]:
    default_mode = int(spec.get("defaultMode") or DEFAULT_MODE)
    files: list[tuple[str, bytes, int]] = []
    for source in spec.get("sources") or []:
        if "configMap" in source:
            cm = source["configMap"]
            data = objects.config_map_bytes(cm["name"])
            files += _key_files(data, cm, default_mode, f'configmap "{cm["name"]}"')
        elif "secret" in source:
            sec = source["secret"]
            data = objects.secret_bytes(sec["name"])
            files += _key_files(data, sec, default_mode, f'secret "{sec["name"]}"')
        elif "downwardAPI" in source:
            files += _downward_files(pod, source["downwardAPI"].get("items") or [], default_mode, allocatable)
        elif "serviceAccountToken" in source:
            tok = source["serviceAccountToken"]
            key = (tok.get("audience") or default_audience, int(tok.get("expirationSeconds") or 3600))
            if key not in tokens:
                raise VolumeError(f"no service account token for audience {key[0]!r}")
            files.append((tok["path"], tokens[key].encode(), default_mode))
        # clusterTrustBundle and podCertificate sources are not supported: skipped.
    return files


def set_ownership(root: str, fs_group: int, *, read_only: bool, on_root_mismatch: bool) -> None:
    """The kubelet's ``SetVolumeOwnership``: group ``fs_group``, group rw (r), setgid directories."""
    mask = RO_MASK if read_only else RW_MASK
    if on_root_mismatch:
        st = os.stat(root)
        if st.st_gid == fs_group and st.st_mode & (mask | EXEC_MASK) == mask | EXEC_MASK:
            return
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            st = os.lstat(name)
            if stat.S_ISLNK(st.st_mode):
                continue
            os.chown(name, -1, fs_group)
            extra = mask | EXEC_MASK | stat.S_ISGID if stat.S_ISDIR(st.st_mode) else mask
            os.chmod(name, stat.S_IMODE(st.st_mode) | extra)


def _host_path(spec: Mapping[str, Any]) -> str:
    path = str(spec["path"])
    kind = spec.get("type") or ""
    if kind == "DirectoryOrCreate" and not os.path.exists(path):
        os.makedirs(path, 0o755, exist_ok=True)
    elif kind == "FileOrCreate" and not os.path.exists(path):
        os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
        Path(path).touch(0o644)
    checks: dict[str, Callable[[str], bool]] = {
        "Directory": os.path.isdir,
        "File": os.path.isfile,
        "Socket": lambda p: os.path.exists(p) and stat.S_ISSOCK(os.stat(p).st_mode),
        "CharDevice": lambda p: os.path.exists(p) and stat.S_ISCHR(os.stat(p).st_mode),
        "BlockDevice": lambda p: os.path.exists(p) and stat.S_ISBLK(os.stat(p).st_mode),
    }
    if kind in checks and not checks[kind](path):
        raise VolumeError(f"hostPath type check failed: {path} is not a {kind}")
    return path


def _volume_files(ctx: VolumeContext, kind: str, spec: Mapping[str, Any]) -> list[tuple[str, bytes, int]]:
    default_mode = int(spec.get("defaultMode") or DEFAULT_MODE)
    if kind == "configMap":
        data = ctx.objects.config_map_bytes(spec["name"])
        return _key_files(data, spec, default_mode, f'configmap "{spec["name"]}"')
    if kind == "secret":
        data = ctx.objects.secret_bytes(spec["secretName"])
        return _key_files(data, spec, default_mode, f'secret "{spec["secretName"]}"')
    if kind == "downwardAPI":
        return _downward_files(ctx.pod, spec.get("items") or [], default_mode, ctx.allocatable)
    return _projected_files(ctx.pod, spec, ctx.objects, ctx.tokens, ctx.default_audience, ctx.allocatable)


@dataclass
class VolumeContext:
    """What a pod's volumes are built from."""

    pod: Mapping[str, Any]
    pod_dir: Path
    objects: ObjectSource
    claim_paths: Mapping[str, str] = field(default_factory=dict)
    tokens: Mapping[tuple[str, int], str] = field(default_factory=dict)
    default_audience: str = ""
    allocatable: Mapping[str, str] = field(default_factory=dict)

    @property
    def fs_group(self) -> int | None:
        value = (self.pod["spec"].get("securityContext") or {}).get("fsGroup")
        return None if value is None else int(value)


def prepare_volumes(ctx: VolumeContext) -> dict[str, Volume]:
    """Create every volume of the pod on the host; ``VolumeError`` when one is not ready yet."""
    out: dict[str, Volume] = {}
    fs_group = ctx.fs_group
    security = ctx.pod["spec"].get("securityContext") or {}
    on_root_mismatch = security.get("fsGroupChangePolicy") == "OnRootMismatch"
    for volume in ctx.pod["spec"].get("volumes") or []:
        name = volume["name"]
        kind = next((k for k in SUPPORTED if k in volume), None)
        if kind is None:
            other = sorted(k for k in volume if k != "name")
            raise VolumeError(f"volume {name!r}: type {other} is not supported by the process node")
        root = ctx.pod_dir / "volumes" / name
        if kind == "emptyDir":
            root.mkdir(parents=True, exist_ok=True)
            root.chmod(0o777)
            if fs_group is not None:
                set_ownership(str(root), fs_group, read_only=False, on_root_mismatch=on_root_mismatch)
            out[name] = Volume(name, str(root))
        elif kind in ("configMap", "secret", "downwardAPI", "projected"):
            if root.exists():
                shutil.rmtree(root)
            _write_files(root, _volume_files(ctx, kind, volume[kind]), fs_group)
            out[name] = Volume(name, str(root), read_only=True)
        elif kind in ("persistentVolumeClaim", "ephemeral"):
            claim = claim_name(ctx.pod, volume)
            if claim not in ctx.claim_paths:
                raise VolumeError(f"persistentvolumeclaim {claim!r} is not bound yet")
            path = ctx.claim_paths[str(claim)]
            read_only = bool((volume.get("persistentVolumeClaim") or {}).get("readOnly"))
            if fs_group is not None and not read_only:
                set_ownership(path, fs_group, read_only=False, on_root_mismatch=on_root_mismatch)
            out[name] = Volume(name, path, read_only=read_only)
        else:
            out[name] = Volume(name, _host_path(volume["hostPath"]))
    return out


def container_mounts(
    container: Mapping[str, Any], volumes: Mapping[str, Volume], env: Mapping[str, str]
) -> list[Mount]:
    """Bind mounts of one container (``subPath``/``subPathExpr`` created if missing, like the kubelet)."""
    mounts = []
    for vm in container.get("volumeMounts") or []:
        volume = volumes.get(vm["name"])
        if volume is None:
            raise VolumeError(f"volumeMount {vm['name']!r} names no volume of the pod")
        sub = vm.get("subPath") or ""
        if vm.get("subPathExpr"):
            sub = expand(vm["subPathExpr"], env.get)
        source = _safe_join(volume.path, sub, "subPath")
        if sub and not os.path.exists(source):
            if volume.read_only:
                raise VolumeError(f"subPath {sub!r} does not exist in read-only volume {vm['name']!r}")
            os.makedirs(source, 0o777 & stat.S_IMODE(os.stat(volume.path).st_mode), exist_ok=True)
        try:
            target = check_target(vm["mountPath"])
        except ValueError as err:
            raise VolumeError(str(err)) from err
        mounts.append(
            Mount(
                source=source,
                target=target,
                read_only=bool(vm.get("readOnly")) or volume.read_only,
                is_file=not os.path.isdir(source),
            )
        )
    return mounts


def remove_pod_volumes(pod_dir: Path) -> None:
    """Remove the pod's own volumes (emptyDir, configMap, secret, projected); claims stay."""
    shutil.rmtree(pod_dir / "volumes", ignore_errors=True)
