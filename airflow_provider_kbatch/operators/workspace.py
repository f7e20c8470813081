"""KbatchWorkspaceCleanupOperator: delete a DAG run's workspace claim once the run succeeded.

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
    """Delete the run's provider-created workspace claim (``retention="delete_on_success"``).

    Returns the name of the claim deleted, or ``None``.

    :param workspace: the same :class:`~airflow_provider_kbatch.pipeline.workspace.Workspace` the stages use.
    :param namespace: namespace of the claim and of the run ledger (templated).
    :param check_run: also ask Airflow for the states of the run's other tasks and keep the claim
        when one did not succeed (the trigger rule only sees direct upstream tasks).
    """

    template_fields: Sequence[str] = ("namespace",)
    ui_color = "#f0e4d6"

    def __init__(
        self,
        *,
        workspace: Workspace,
        namespace: str = "default",
        conn_id: str = "kubernetes_default",
        cluster_context: str | None = None,
        config_file: str | None = None,
        check_run: bool = True,
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

    def _others_unfinished(self, context: Context) -> list[str]:
        ti = context["ti"]
        try:
            states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id])
        except Exception as err:  # not every execution mode answers; the trigger rule still holds
            self.log.warning("could not read the run's task states (%s); relying on the trigger rule", err)
            return []
        return unfinished_tasks(states, ti.run_id, ti.task_id)

    def execute(self, context: Context) -> str | None:
        from airflow_provider_kbatch.engine import storage

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
        return storage.delete_workspace(self.hook, self.namespace, identity, self.workspace, self.log)
