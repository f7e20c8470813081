"""Reading the cncf ``kubernetes`` connection's extras by name (pure).

Only the extras listed in :data:`ALLOWED_EXTRAS` are read (also under their legacy
``extra__kubernetes__`` prefix); nothing else in ``extra_dejson`` is forwarded anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ALLOWED_EXTRAS = (
    "in_cluster",
    "kube_config_path",
    "kube_config",
    "cluster_context",
    "namespace",
    "disable_verify_ssl",
    "disable_tcp_keepalive",
)
DEFAULT_NAMESPACE = "default"


def allowed_extras(extras: Mapping[str, Any] | None, *, config_file: str | None = None) -> dict[str, Any]:
    """The allow-listed, non-empty connection extras; ``config_file`` overrides ``kube_config_path``."""
    extras = extras or {}
    picked: dict[str, Any] = {}
    for name in ALLOWED_EXTRAS:
        value = extras.get(name)
        if value in (None, ""):
            value = extras.get(f"extra__kubernetes__{name}")
        if value not in (None, ""):
            picked[name] = value
    if config_file:
        picked["kube_config_path"] = config_file
    return picked


def resolve_namespace(explicit: str | None, connection_namespace: str | None) -> str:
    """Hook argument, else the connection's ``namespace`` extra, else ``default``."""
    return explicit or connection_namespace or DEFAULT_NAMESPACE
