"""What the sync and async hooks share (no I/O): the cncf connection metadata, the constructor
(:class:`_HookBase` stores arguments only) and the default retry and watch settings. The hooks are
:class:`~airflow_provider_kbatch.hooks.kbatch.KbatchHook` and
:class:`~airflow_provider_kbatch.hooks.async_kbatch.AsyncKbatchHook` (both importable from
:mod:`airflow_provider_kbatch.hooks.kbatch`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airflow.sdk import BaseHook

from airflow_provider_kbatch.hooks.retry import RetryPolicy

Mutate = Callable[[dict[str, str]], dict[str, str]]

# A request outlasts an API server restart: 8 attempts, 0.5 s doubling to 15 s, so at least 40 s of
# refused connections (at most 49 s, with jitter) before it raises. Five attempts (about 7 s) lost a task
# when a restart on a loaded machine took 9 s.
DEFAULT_RETRY_POLICY = RetryPolicy(max_attempts=8, base_delay=0.5, max_delay=15.0)
# Watches live long: reconnect patiently (about 3.5 minutes of consecutive failures).
DEFAULT_WATCH_RETRY_POLICY = RetryPolicy(max_attempts=12, base_delay=1.0, max_delay=30.0)
DEFAULT_WATCH_TIMEOUT_SECONDS = 240
# Client-side timeout of a watch request = server-side timeout + this slack.
WATCH_CLIENT_TIMEOUT_SLACK_SECONDS = 30
# A followed log has no end of its own: bound the connect only (connect, read).
LOG_STREAM_TIMEOUT = (30, None)


class _HookBase(BaseHook):
    """Connection metadata and constructor shared by both hooks (stores arguments only, no I/O)."""

    conn_name_attr = "conn_id"
    default_conn_name = "kubernetes_default"
    conn_type = "kubernetes"
    hook_name = "Kubernetes (kbatch)"

    def __init__(
        self,
        conn_id: str = default_conn_name,
        *,
        namespace: str | None = None,
        cluster_context: str | None = None,
        config_file: str | None = None,
        in_cluster: bool | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.namespace = namespace
        self.cluster_context = cluster_context
        self.config_file = config_file
        self.in_cluster = in_cluster
        self.retry_policy = retry_policy or DEFAULT_RETRY_POLICY

    def _cncf_kwargs(self) -> dict[str, Any]:
        return {
            "conn_id": self.conn_id,
            "cluster_context": self.cluster_context,
            "config_file": self.config_file,
            "in_cluster": self.in_cluster,
        }
