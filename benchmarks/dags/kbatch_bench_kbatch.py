"""The kbatch side of the benchmarks: ``kbatch_bench_kbatch`` (see ``benchmarks/dagshape.py``).
One file per operator: a task process parses only its own operator's imports."""

from __future__ import annotations

from typing import Any

from airflow.sdk import task

from airflow_provider_kbatch.operators.job import KbatchJobOperator
from benchmarks.dagshape import ARGS, CONTAINER, IMAGE, dag, plan

with dag("kbatch_bench_kbatch"):

    @task
    def plan_kbatch(params: dict[str, Any]) -> list[dict[str, Any]]:
        return plan(params, "env")

    KbatchJobOperator.partial(
        task_id="stage",
        namespace="{{ params.namespace }}",
        image=IMAGE,
        command=["python", "-c", CONTAINER],
        backoff_limit_per_index=0,
        progress_interval=30,
        **ARGS,
    ).expand_kwargs(plan_kbatch())
