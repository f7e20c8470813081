"""Build (or find in the cache) the control-plane binary of the development cluster.

The Go module beside this file links etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kubectl into one multi-call binary from the published modules. The binary is
cached outside the repository under ``<cache>/bin/<key>/`` where the key hashes the module files
and the Go version, so a warm start never rebuilds and a changed ``go.sum`` always does.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

GO_MODULE_DIR = Path(__file__).resolve().parent / "go"
BINARY = "kbatch-k8s"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
_KEY_FILES = ("go.mod", "go.sum", "main.go")


def cache_root() -> Path:
    """Where builds, virtualenvs and cluster state live: ``$KBATCH_CACHE`` or ``~/.cache/kbatch``."""
    configured = os.environ.get("KBATCH_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kbatch"


def kubernetes_version(module_dir: Path = GO_MODULE_DIR) -> str:
    """The ``k8s.io/kubernetes`` release the Go module requires, e.g. ``v1.36.3``."""
    text = (module_dir / "go.mod").read_text()
    match = re.search(r"^\s*k8s\.io/kubernetes\s+(v\d+\.\d+\.\d+)\s*$", text, re.MULTILINE)
    if not match:
        raise RuntimeError(f"{module_dir / 'go.mod'} does not require k8s.io/kubernetes")
    return match.group(1)


def _go() -> str:
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if not go:
        raise RuntimeError("the Go toolchain is needed to build the control plane: install Go 1.26+")
    return go


def _go_version(go: str) -> str:
    return subprocess.run([go, "env", "GOVERSION"], check=True, capture_output=True, text=True).stdout.strip()


def build_key(module_dir: Path = GO_MODULE_DIR, go_version: str = "") -> str:
    digest = hashlib.sha256(go_version.encode())
    for name in _KEY_FILES:
        digest.update(name.encode() + b"\0" + (module_dir / name).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def ldflags(version: str) -> str:
    """Version stamps so ``/version`` reports the real release instead of ``v0.0.0-master``."""
    major, minor, _ = version.lstrip("v").split(".")
    flags = ["-s", "-w"]
    for package in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version"):
        for key, value in (
            ("gitVersion", version),
            ("gitMajor", major),
            ("gitMinor", minor),
            ("gitTreeState", "clean"),
            ("buildDate", "1970-01-01T00:00:00Z"),
        ):
            flags.append(f"-X {package}.{key}={value}")
    return " ".join(flags)


def ensure_binaries(*, module_dir: Path = GO_MODULE_DIR, quiet: bool = False) -> Path:
    """Return the directory holding ``kbatch-k8s`` and one symlink per component, building if needed."""
    go = _go()
    key = build_key(module_dir, _go_version(go))
    bin_dir = cache_root() / "bin" / key
    binary = bin_dir / BINARY
    if binary.exists():
        _link_components(bin_dir)
        return bin_dir
    bin_dir.mkdir(parents=True, exist_ok=True)
    with open(bin_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent build of the same key waits for the first
        if not binary.exists():
            _build(go, module_dir, binary, quiet=quiet)
    _link_components(bin_dir)
    return bin_dir


def _link_components(bin_dir: Path) -> None:
    for name in COMPONENTS:
        link = bin_dir / name
        if not link.is_symlink():
            link.unlink(missing_ok=True)
            link.symlink_to(BINARY)


def _say(quiet: bool, message: str) -> None:
    if not quiet:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()


def _build(go: str, module_dir: Path, binary: Path, *, quiet: bool) -> None:
    version = kubernetes_version(module_dir)
    _say(
        quiet,
        f"kbatch devcluster: building Kubernetes {version} control plane (etcd, kube-apiserver, "
        f"kube-controller-manager, kube-scheduler, kubectl) from the Go module proxy into {binary.parent}.\n"
        "  A cold build takes 15-25 minutes on 2 cores; later starts reuse it.",
    )
    env = dict(os.environ, CGO_ENABLED="0")
    tmp = binary.with_name(binary.name + ".tmp")
    cmd = [go, "build", "-v", "-trimpath", "-ldflags", ldflags(version), "-o", str(tmp), "."]
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=module_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    compiled = 0
    tail: list[str] = []
    last_report = started
    for line in proc.stdout:
        line = line.rstrip()
        tail = ([*tail, line])[-40:]
        if line and not line.startswith(("go: ", "#")) and " " not in line:
            compiled += 1  # `go build -v` prints one package path per package it compiles
        now = time.monotonic()
        if now - last_report >= 30:
            last_report = now
            _say(quiet, f"  ... {now - started:4.0f}s: {compiled} packages compiled (last: {line[:90]})")
    code = proc.wait()
    if code != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"go build failed with exit code {code}:\n" + "\n".join(tail))
    tmp.rename(binary)
    _say(quiet, f"kbatch devcluster: built {binary} in {time.monotonic() - started:.0f}s")
