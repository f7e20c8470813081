"""Extra links of a kbatch stage: "Indexes" (the plugin's per-index tab) and configured templates.

Airflow 3 computes a task's links on the worker when the task ends and stores each in an XCom
(``xcom_key``); the api-server shows them by name. ``KbatchJobOperator(links={"Grafana":
"https://grafana/d/kbatch?var-dag={dag_id}&var-run={run_id}"})`` adds one link per entry; the
template's fields are ``{dag_id}``, ``{run_id}``, ``{task_id}``, ``{map_index}``, ``{try_number}``,
each URL-quoted. (Templates apply to unmapped tasks: a mapped task shows "Indexes" only, since
Airflow takes a mapped task's links from the operator class.)
"""

from __future__ import annotations

import string
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

from airflow_provider_kbatch.spec.errors import KbatchSpecError

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

#: The url_route of the plugin's task-instance tab (``airflow_provider_kbatch.ui.plugin``).
INDEXES_TAB = "kbatch-indexes"
LINK_FIELDS = ("dag_id", "run_id", "task_id", "map_index", "try_number")
MAX_LINKS = 10


def _base_url() -> str:
    try:
        from airflow.providers.common.compat.sdk import conf

        return str(conf.get("api", "base_url", fallback="") or "").rstrip("/")
    except Exception:  # no configuration: a relative link still works inside the UI
        return ""


def _fields(ti_key: TaskInstanceKey) -> dict[str, str]:
    return {
        "dag_id": ti_key.dag_id,
        "run_id": ti_key.run_id,
        "task_id": ti_key.task_id,
        "map_index": str(ti_key.map_index),
        "try_number": str(ti_key.try_number),
    }


def indexes_url(dag_id: str, run_id: str, task_id: str, map_index: int, base: str = "") -> str:
    """The Airflow UI page of the task instance's kbatch tab."""
    q = urllib.parse.quote
    path = f"{base}/dags/{q(dag_id, safe='')}/runs/{q(run_id, safe='')}/tasks/{q(task_id, safe='')}"
    if map_index >= 0:
        path += f"/mapped/{map_index}"
    return f"{path}/plugin/{INDEXES_TAB}"


class KbatchIndexesLink(BaseOperatorLink):
    """ "Indexes": the task instance's per-index view (the kbatch plugin's tab)."""

    name = "Indexes"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return indexes_url(ti_key.dag_id, ti_key.run_id, ti_key.task_id, ti_key.map_index, _base_url())


class KbatchTemplateLink(BaseOperatorLink):
    """One configured link: ``template`` formatted with the task instance's URL-quoted fields."""

    def __init__(self, name: str, template: str) -> None:
        self._name, self.template = name, template

    @property
    def name(self) -> str:
        return self._name

    @property
    def xcom_key(self) -> str:
        return "_link_kbatch_" + "".join(c if c.isalnum() else "_" for c in self._name)

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        if link_problems({self._name: self.template}):  # the task failed on it already: no link
            return ""
        return render_link(self.template, _fields(ti_key))


def render_link(template: str, fields: Mapping[str, str]) -> str:
    return template.format(**{k: urllib.parse.quote(v, safe="") for k, v in fields.items()})


def link_problems(links: Any) -> list[str]:
    """What is wrong with ``links`` (a mapping of link name -> URL template), one line each."""
    if links is None:
        return []
    if not isinstance(links, Mapping):
        return [f"expected a mapping of link name -> URL template, got {type(links).__name__}"]
    problems = []
    if len(links) > MAX_LINKS:
        problems.append(f"at most {MAX_LINKS} links, got {len(links)}")
    for name, template in links.items():
        if not isinstance(name, str) or not name.strip() or name == KbatchIndexesLink.name:
            problems.append(f"{name!r}: a link needs a non-empty name other than 'Indexes'")
            continue
        if not isinstance(template, str) or not template.startswith(("https://", "http://", "/")):
            problems.append(f"{name!r}: expected an http(s):// URL or a /path template, got {template!r}")
            continue
        try:
            used = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
        except ValueError as err:
            problems.append(f"{name!r}: not a valid template ({err}); write literal braces as {{{{ }}}}")
            continue
        unknown = sorted(used - set(LINK_FIELDS))
        if unknown:
            problems.append(
                f"{name!r}: unknown field(s) {', '.join('{' + u + '}' for u in unknown)}; "
                f"use {', '.join('{' + f + '}' for f in LINK_FIELDS)}"
            )
    return problems


def check_links(links: Any) -> None:
    problems = link_problems(links)
    if problems:
        raise KbatchSpecError(
            "links",
            "; ".join(problems),
            "Pass links={'Name': 'https://host/path?dag={dag_id}&run={run_id}'} with the fields "
            + ", ".join("{" + f + "}" for f in LINK_FIELDS),
        )


def operator_links(links: Mapping[str, str] | None) -> tuple[BaseOperatorLink, ...]:
    """ "Indexes" and one link per well-formed configured entry (bad ones fail the task: execute)."""
    out: list[BaseOperatorLink] = [KbatchIndexesLink()]
    if isinstance(links, Mapping):
        out.extend(
            KbatchTemplateLink(name, template)
            for name, template in links.items()
            if isinstance(name, str) and isinstance(template, str) and name != KbatchIndexesLink.name
        )
    return tuple(out)
