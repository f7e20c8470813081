"""Build (or find in the cache) the Go tools the tests and ``make demo`` use besides the control plane.

Each tool is a published Go command built with ``go install <package>@<version>`` from the module
proxy into ``<cache>/tools/<name>-<version>-<key>/`` (the key hashes the package, the version and
the Go version), the way :mod:`.build` caches the control plane: a warm start never rebuilds, a
changed version always does, and two concurrent callers build once.

A module whose ``go.mod`` has ``replace`` directives cannot be ``go install``-ed by version; such
a tool names a ``wrapper`` Go module directory (beside this file under ``gotools/<name>``) that
requires it and is built with ``go build`` instead.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from airflow_provider_kbatch.devcluster.build import _go, _go_version, cache_root

WRAPPERS_DIR = Path(__file__).resolve().parent / "gotools"


@dataclasses.dataclass(frozen=True)
class GoTool:
    name: str
    package: str  # the command's package path, e.g. helm.sh/helm/v3/cmd/helm
    version: str  # the module version, e.g. v3.22.0
    wrapper: str | None = None  # a directory under gotools/ built with `go build` instead
    ldflags: str = "-s -w"


TOOLS: dict[str, GoTool] = {
    # the stamps helm's Makefile sets: its version, and the Kubernetes version `helm lint` and
    # `helm template` assume without a cluster (the major/minor of go.mod's k8s.io/client-go
    # v0.37.0 plus one major: 1.37; unset, they would be 1.20 and a chart's kubeVersion fails)
    "helm": GoTool(
        "helm",
        "helm.sh/helm/v3/cmd/helm",
        "v3.22.0",
        ldflags=" ".join(
            [
                "-s -w -X helm.sh/helm/v3/internal/version.version=v3.22.0",
                *(
                    f"-X helm.sh/helm/v3/pkg/{pkg}.k8sVersion{part}={value}"
                    for pkg in ("lint/rules", "chartutil")
                    for part, value in (("Major", "1"), ("Minor", "37"))
                ),
            ]
        ),
    ),
    "promtool": GoTool("promtool", "github.com/prometheus/prometheus/cmd/promtool", "v0.316.0"),
    "kueue": GoTool("kueue", "sigs.k8s.io/kueue/cmd/kueue", "v0.17.0"),
}


def _key(tool: GoTool, go_version: str) -> str:
    digest = hashlib.sha256(f"{tool.package}@{tool.version}\0{tool.ldflags}\0{go_version}".encode())
    if tool.wrapper:
        for path in sorted((WRAPPERS_DIR / tool.wrapper).glob("*")):
            if path.is_file():
                digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def tool_path(name: str, *, quiet: bool = False) -> Path:
    """The path of the built tool ``name`` (one of :data:`TOOLS`), building it when not cached."""
    tool = TOOLS[name]
    go = _go()
    directory = cache_root() / "tools" / f"{tool.name}-{tool.version}-{_key(tool, _go_version(go))}"
    binary = directory / tool.name
    if binary.exists():
        return binary
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent build of the same tool waits for the first
        if not binary.exists():
            _build(go, tool, binary, quiet=quiet)
    return binary


def _build(go: str, tool: GoTool, binary: Path, *, quiet: bool) -> None:
    if not quiet:
        sys.stderr.write(
            f"kbatch devcluster: building {tool.name} {tool.version} ({tool.package}) from the Go "
            f"module proxy into {binary.parent}; later starts reuse it.\n"
        )
    started = time.monotonic()
    env = dict(os.environ, CGO_ENABLED="0")
    tmp = binary.with_name(binary.name + ".tmp")
    if tool.wrapper:
        cmd = [go, "build", "-trimpath", "-ldflags", tool.ldflags, "-o", str(tmp), tool.package]
        cwd = WRAPPERS_DIR / tool.wrapper
        result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    else:
        with tempfile.TemporaryDirectory(dir=binary.parent) as gobin:
            env["GOBIN"] = gobin
            cmd = [go, "install", "-trimpath", "-ldflags", tool.ldflags, f"{tool.package}@{tool.version}"]
            result = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=gobin)
            built = Path(gobin) / tool.package.rsplit("/", 1)[-1]
            if result.returncode == 0:
                built.rename(tmp)
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
        raise RuntimeError(f"building {tool.name} failed (exit {result.returncode}):\n{tail}")
    tmp.rename(binary)
    if not quiet:
        sys.stderr.write(f"kbatch devcluster: built {binary} in {time.monotonic() - started:.0f}s\n")
