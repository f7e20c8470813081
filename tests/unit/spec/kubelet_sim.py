"""A faithful little model of what the kubelet does with a container's env and command, so unit
tests can run a rendered container for real with /bin/sh.

- env values are expanded in order, each seeing only the variables declared before it
  (``$(NAME)`` -> value when declared, ``$$`` -> ``$``, anything else kept verbatim);
- ``valueFrom.fieldRef`` on ``metadata.annotations['...']`` reads the pod's annotations;
- ``command`` and ``args`` are expanded against the final environment;
- for Indexed Jobs the Job controller appends ``JOB_COMPLETION_INDEX`` when it is not declared.
"""

from __future__ import annotations

import re
from typing import Any

_ANNOTATION_REF = re.compile(r"metadata\.annotations\['([^']+)'\]")


def expand(text: str, env: dict[str, str]) -> str:
    out = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                close = text.find(")", i + 2)
                if close != -1:
                    name = text[i + 2 : close]
                    out.append(env.get(name, f"$({name})"))
                    i = close + 1
                    continue
                out.append("$(")
                i += 2
                continue
            out.append("$" + nxt)
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def container_env(
    container: dict[str, Any], pod_annotations: dict[str, str], *, indexed: bool
) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = expand(item["value"], env)
            continue
        ref = item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath", "")
        match = _ANNOTATION_REF.fullmatch(ref)
        if match:
            env[item["name"]] = pod_annotations.get(match[1], "")
    if indexed and "JOB_COMPLETION_INDEX" not in env:
        env["JOB_COMPLETION_INDEX"] = pod_annotations["batch.kubernetes.io/job-completion-index"]
    return env


def container_argv(container: dict[str, Any], env: dict[str, str]) -> list[str]:
    return [expand(a, env) for a in [*(container.get("command") or []), *(container.get("args") or [])]]
