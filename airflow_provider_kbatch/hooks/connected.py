"""The hooks of an operator, sensor or trigger, from its connection arguments.

Every task-side class of the provider takes ``conn_id``, ``cluster_context`` and ``config_file``;
:class:`KbatchConnected` turns them into a :class:`KbatchHook` (``hook``, cached per instance)
or a fresh :class:`AsyncKbatchHook` (``async_hook()``). The hooks module is imported on first
use, so parsing a DAG file does not load the Kubernetes clients.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_provider_kbatch.hooks.kbatch import AsyncKbatchHook, KbatchHook


class KbatchConnected:
    """Mixin: ``hook`` and ``async_hook()`` from ``conn_id``, ``cluster_context``, ``config_file``."""

    conn_id: str
    cluster_context: str | None
    config_file: str | None

    @cached_property
    def hook(self) -> KbatchHook:
        from airflow_provider_kbatch.hooks.kbatch import KbatchHook

        return KbatchHook(
            conn_id=self.conn_id, cluster_context=self.cluster_context, config_file=self.config_file
        )

    def async_hook(self) -> AsyncKbatchHook:
        from airflow_provider_kbatch.hooks.kbatch import AsyncKbatchHook

        return AsyncKbatchHook(
            conn_id=self.conn_id, cluster_context=self.cluster_context, config_file=self.config_file
        )
