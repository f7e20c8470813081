"""KbatchWorkspaceCleanupOperator: free a DAG run's storage once the run succeeded -- its finished
Jobs (and so their pods, which keep the claim ``Terminating`` until their TTL), then its claim.

``Workspace(create=True, retention="delete_on_success")`` means: the claim lives as long as the
run needs it and is deleted by this operator, placed after every stage::

    cleanup = KbatchWorkspaceCleanupOperator(task_id="cleanup", workspace=WS, namespace=NS)
    [ingest, transform, publish] >> cleanup

It runs only when every upstream task succeeded (``trigger_rule="all_success"``), and also checks
that no other task of the run failed or is unfinished. A failed run keeps its claim, so a clear or
retry of its stages finds its inputs. The deletion is recorded in the run ledger first; a stage
that runs later in this run gets a claim of the next generation, never the deleted one, and a
consumer whose input was on the deleted claim fails fast naming it.
``retention="retain"`` and existing claims (``claim_name=``) are never deleted.

A claim is only gone once no pod mounts it (the ``pvc-protection`` finalizer), and a completed
pod lives as long as its Job (``ttl_seconds_after_finished``, a day by default). So the operator
first deletes the run's finished kbatch Jobs with their pods (found by the run's labels, checked
by the DAG and run ids in their annotations; a running Job is never deleted, and one of this run
that mounts the claim makes the cleanup fail retryably before anything is deleted), then the
claim, and waits up to ``claim_wait_seconds`` until the claim object is gone
(:func:`airflow_provider_kbatch.engine.cleanup.free_workspace`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_kbatch.hooks.connected import KbatchConnected
from airflow_provider_kbatch.pipeline.workspace import Workspace
from airflow_provider_kbatch.spec.names import JobIdentity

if TYPE_CHECKING:
    from airflow.sdk import Context


FINE_STATES = frozenset({"success", "skipped"})


def unfinished_tasks(task_states: Mapping[str, Any], run_id: str, own_task_id: str) -> list[str]:
    """Tasks of ``run_id`` other than ``own_task_id`` that did not succeed (or were not skipped).

    ``task_states`` is what ``RuntimeTaskInstance.get_task_states`` returns
    (``{run_id: {task_id or "<task_id>_<map index>": state}}``).
    """
    states = task_states.get(run_id, task_states)
    own = re.compile(rf"{re.escape(own_task_id)}(_\d+)?")  # mapped instances are "<task>_<map index>"
    return sorted(
        f"{task} ({state})"
        for task, state in states.items()
        if not own.fullmatch(str(task)) and state not in FINE_STATES
    )


class KbatchWorkspaceCleanupOperator(KbatchConnected, BaseOperator):
    """Delete the run's finished kbatch Jobs and its provider-created workspace claim
    (``retention="delete_on_success"``), and wait until the claim is gone.

    Returns the name of the claim deleted, or ``None``.

    :param workspace: the same :class:`~airflow_provider_kbatch.pipeline.workspace.Workspace` the stages use.
    :param namespace: namespace of the claim and of the run ledger (templated); ``None`` (default):
        the connection's ``namespace`` extra, else ``default``. An invalid name fails before any request.
    :param check_run: also ask Airflow for the states of the run's other tasks and keep the claim
        when one did not succeed (the trigger rule only sees direct upstream tasks).
    :param claim_wait_seconds: how long to wait for the claim to be gone after its deletion; the
        task fails (retryably, naming the pods that still mount it) when it is not.
    """

    template_fields: Sequence[str] = ("namespace",)
    ui_color = "#f0e4d6"

    def __init__(
        self,
        *,
        workspace: Workspace,
        namespace: str | None = None,
        conn_id: str = "kubernetes_default",
        cluster_context: str | None = None,
        config_file: str | None = None,
        check_run: bool = True,
        claim_wait_seconds: float = 120.0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("trigger_rule", "all_success")
        super().__init__(**kwargs)
        self.workspace = workspace
        self.namespace = namespace
        self.conn_id = conn_id
        self.cluster_context = cluster_context
        self.config_file = config_file
        self.check_run = check_run
        self.claim_wait_seconds = claim_wait_seconds

    def _others_unfinished(self, context: Context) -> list[str]:
        ti = context["ti"]
        try:
            states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id])
        except Exception as err:  # not every execution mode answers; the trigger rule still holds
            self.log.warning("could not read the run's task states (%s); relying on the trigger rule", err)
            return []
        return unfinished_tasks(states, ti.run_id, ti.task_id)

    def execute(self, context: Context) -> str | None:
        from airflow_provider_kbatch.engine import cleanup
        from airflow_provider_kbatch.glue.errors import airflow_errors

        if not self.workspace.provisioned:
            self.log.info("workspace claim %s is not the provider's: kept", self.workspace.claim_name)
            return None
        if self.workspace.retention == "retain":
            self.log.info("workspace retention is 'retain': the run's claim is kept")
            return None
        if self.check_run:
            others = self._others_unfinished(context)
            if others:
                self.log.warning("the run did not succeed yet (%s): its claim is kept", ", ".join(others))
                return None
        ti = context["ti"]
        identity = JobIdentity(dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id)
        from airflow_provider_kbatch.hooks.connection import task_namespace

        with airflow_errors():  # a claim of another run: final; a claim still in use: retryable
            namespace = task_namespace(
                self.namespace, lambda: self.hook.get_namespace(), conn_id=self.conn_id
            )
            report = cleanup.free_workspace(
                self.hook,
                namespace,
                identity,
                self.workspace,
                self.log,
                wait_seconds=self.claim_wait_seconds,
            )
        return report.claim
