"""The lifecycle operators: delete, suspend or resume Jobs, by name or by label selector.

Public import path: :mod:`airflow_provider_kbatch.operators.job` (DESIGN.md), which re-exports
them. Thin glue: the namespace is resolved and checked by
:func:`~airflow_provider_kbatch.hooks.connection.task_namespace`, every call made by the hook.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_kbatch.glue.errors import airflow_errors
from airflow_provider_kbatch.hooks.connected import KbatchConnected
from airflow_provider_kbatch.hooks.connection import task_namespace

if TYPE_CHECKING:
    from airflow.sdk import Context


class _JobRefOperator(KbatchConnected, BaseOperator):
    """Base of the lifecycle operators: a Job by name, or every Job matching a label selector.

    :param namespace: the Jobs' namespace (templated); ``None`` (default): the connection's
        ``namespace`` extra, else ``default``. An invalid name fails before any request.
    """

    template_fields: Sequence[str] = ("job_name", "label_selector", "namespace")

    def __init__(
        self,
        *,
        job_name: str | None = None,
        label_selector: str | None = None,
        namespace: str | None = None,
        conn_id: str = "kubernetes_default",
        cluster_context: str | None = None,
        config_file: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (job_name is None) == (label_selector is None):
            raise ValueError(f"{type(self).__name__}: pass exactly one of job_name or label_selector")
        self.job_name = job_name
        self.label_selector = label_selector
        self.namespace = namespace
        self.conn_id = conn_id
        self.cluster_context = cluster_context
        self.config_file = config_file

    def job_names(self) -> tuple[str, list[str]]:
        """The namespace and the names of the Jobs to act on."""
        # Checked after templating: an empty name or selector must not fall through to a list
        # with an empty selector, which matches (and would delete) every Job in the namespace.
        if self.job_name is not None and not self.job_name.strip():
            raise AirflowFailException(f"{type(self).__name__}: job_name is empty (after templating)")
        if self.job_name is None and not (self.label_selector or "").strip():
            raise AirflowFailException(
                f"{type(self).__name__}: label_selector is empty (after templating); it would match every Job"
            )
        with airflow_errors():
            namespace = task_namespace(
                self.namespace, lambda: self.hook.get_namespace(), conn_id=self.conn_id
            )
        if self.job_name is not None:
            return namespace, [self.job_name]
        return namespace, [j["metadata"]["name"] for j in self.hook.list_jobs(namespace, self.label_selector)]


class KbatchDeleteJobOperator(_JobRefOperator):
    """Delete Jobs and their pods (foreground propagation by default). Returns the names deleted.

    :param job_name: the Job (templated); or
    :param label_selector: every Job matching it (templated).
    :param propagation: ``Foreground`` (pods first), ``Background`` or ``Orphan``.
    """

    def __init__(
        self, *, propagation: Literal["Foreground", "Background", "Orphan"] = "Foreground", **kwargs: Any
    ):
        super().__init__(**kwargs)
        self.propagation = propagation

    def execute(self, context: Context) -> list[str]:
        namespace, names = self.job_names()
        for name in names:
            self.log.info("deleting job %s/%s (%s)", namespace, name, self.propagation)
            self.hook.delete_job(namespace, name, propagation=self.propagation)
        return names


class KbatchSuspendJobOperator(_JobRefOperator):
    """Suspend Jobs: their running pods are terminated, completed indexes are kept."""

    def execute(self, context: Context) -> list[str]:
        namespace, names = self.job_names()
        for name in names:
            self.log.info("suspending job %s/%s", namespace, name)
            self.hook.set_suspend(namespace, name, True)
        return names


class KbatchResumeJobOperator(_JobRefOperator):
    """Resume suspended Jobs."""

    def execute(self, context: Context) -> list[str]:
        namespace, names = self.job_names()
        for name in names:
            self.log.info("resuming job %s/%s", namespace, name)
            self.hook.set_suspend(namespace, name, False)
        return names
