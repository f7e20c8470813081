"""The official side of the benchmarks: ``kbatch_bench_official`` (see
``benchmarks/dagshape.py``), the cncf provider's ``KubernetesJobOperator`` with its defaults
but for deferral and waiting (it polls every ``job_poll_interval``, 10 s)."""

from __future__ import annotations

from typing import Any

from airflow.providers.cncf.kubernetes.operators.job import KubernetesJobOperator
from airflow.sdk import task

from benchmarks.dagshape import ARGS, CONTAINER, IMAGE, dag, plan

with dag("kbatch_bench_official"):

    @task
    def plan_official(params: dict[str, Any]) -> list[dict[str, Any]]:
        return plan(params, "env_vars")

    KubernetesJobOperator.partial(
        task_id="stage",
        namespace="{{ params.namespace }}",
        image=IMAGE,
        cmds=["python", "-c", CONTAINER],
        completion_mode="Indexed",
        backoff_limit=0,
        wait_until_job_complete=True,
        deferrable=True,
        **ARGS,
    ).expand_kwargs(plan_official())
