"""Reading the cncf ``kubernetes`` connection's extras by name (pure).

Only the extras listed in :data:`ALLOWED_EXTRAS` are read (also under their legacy
``extra__kubernetes__`` prefix); nothing else in ``extra_dejson`` is forwarded anywhere.
:func:`task_namespace` is the one rule for the namespace of a task (argument, else the
connection's extra, else ``default``), checked before any request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from airflow_provider_kbatch.spec.validation import namespace_problem

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


def task_namespace(explicit: str | None, from_connection: Callable[[], str], *, conn_id: str) -> str:
    """The namespace an operator or sensor works in, checked before any request.

    Its ``namespace`` argument (after templating) when given; else ``from_connection()`` -- the
    hook's :meth:`~airflow_provider_kbatch.hooks.kbatch.KbatchHook.get_namespace`: the
    connection's ``namespace`` extra, else ``default``, as the cncf operators resolve it. An
    invalid name raises :class:`~airflow_provider_kbatch.spec.errors.KbatchSpecError` naming
    ``namespace`` (and the connection when the name came from it): a 404 later would be retried.
    """
    if explicit is None:
        namespace = from_connection()
        problem = namespace_problem(namespace, source=f"the 'namespace' extra of connection {conn_id!r}")
    else:
        namespace = explicit
        problem = namespace_problem(namespace)
    if problem is not None:
        raise problem
    return namespace
