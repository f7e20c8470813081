"""The provider as Airflow sees it: the ``apache_airflow_provider`` entry point, the provider
info it returns (valid for Airflow's schema, every module importable, every public class where
DESIGN.md says it is), and the real ``airflow providers ...`` CLI in an isolated AIRFLOW_HOME."""

from __future__ import annotations

import importlib
import json
from importlib import metadata
from pathlib import Path
from typing import Any

import airflow_provider_kbatch
from airflow_provider_kbatch import get_provider_info

PACKAGE = "airflow-provider-kbatch"

# DESIGN.md "Public API": the fixed names, per provider-info section.
PUBLIC = {
    "operators": {
        "airflow_provider_kbatch.operators.job": [
            "KbatchJobOperator",
            "KbatchDeleteJobOperator",
            "KbatchSuspendJobOperator",
            "KbatchResumeJobOperator",
        ]
    },
    "sensors": {"airflow_provider_kbatch.sensors.job": ["KbatchJobSensor"]},
    "triggers": {"airflow_provider_kbatch.triggers.job": ["KbatchJobTrigger"]},
    "hooks": {"airflow_provider_kbatch.hooks.kbatch": ["KbatchHook", "AsyncKbatchHook"]},
}


def _modules(info: dict[str, Any], section: str) -> list[str]:
    return [m for entry in info.get(section, []) for m in entry["python-modules"]]


def _json_out(proc: Any) -> Any:
    """The JSON document the CLI printed (warnings may precede it on stdout)."""
    out = proc.stdout
    start = min(i for i in (out.find("["), out.find("{")) if i >= 0)
    return json.loads(out[start:])


def test_entry_point_returns_the_provider_info():
    points = [ep for ep in metadata.entry_points(group="apache_airflow_provider") if ep.dist.name == PACKAGE]
    assert len(points) == 1, f"one apache_airflow_provider entry point for {PACKAGE}, got {points}"
    assert points[0].value == "airflow_provider_kbatch:get_provider_info"
    info = points[0].load()()
    assert info == get_provider_info()
    assert info["package-name"] == PACKAGE
    assert info["versions"][0] == airflow_provider_kbatch.__version__ == metadata.version(PACKAGE)


def test_provider_info_is_valid_for_airflow_schema():
    """Airflow's discovery validates the entry point's answer against this schema."""
    import jsonschema
    from airflow import providers_manager

    schema = json.loads((Path(providers_manager.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_every_module_named_in_the_provider_info_imports_and_holds_the_public_classes():
    info = get_provider_info()
    integrations = {i["integration-name"] for i in info["integrations"]}
    for section, expected in PUBLIC.items():
        assert set(expected) <= set(_modules(info, section)), section
        for entry in info[section]:
            assert entry["integration-name"] in integrations, f"{section}: unknown integration"
            for module_name in entry["python-modules"]:
                importlib.import_module(module_name)
        for module_name, classes in expected.items():
            module = importlib.import_module(module_name)
            for cls in classes:
                assert isinstance(getattr(module, cls, None), type), f"{module_name}.{cls}"


def test_every_operator_sensor_trigger_and_hook_module_is_registered():
    """A module of the package that defines an operator, sensor, trigger or hook is listed in its
    section of the provider info (else Airflow's UI and `providers` commands do not know it)."""
    from airflow.sdk import BaseHook, BaseOperator, BaseSensorOperator
    from airflow.triggers.base import BaseTrigger

    info = get_provider_info()
    package = Path(airflow_provider_kbatch.__file__).parent
    bases = {
        "sensors": BaseSensorOperator,
        "operators": BaseOperator,
        "triggers": BaseTrigger,
        "hooks": BaseHook,
    }
    missing = []
    for section, base in bases.items():
        for path in sorted((package / section).glob("*.py")):
            module_name = f"airflow_provider_kbatch.{section}.{path.stem}"
            module = importlib.import_module(module_name)
            defined = [
                obj
                for obj in vars(module).values()
                if isinstance(obj, type)
                and issubclass(obj, base)
                and obj.__module__ == module_name
                and not obj.__name__.startswith("_")
                and not (section == "operators" and issubclass(obj, BaseSensorOperator))
            ]
            if defined and module_name not in _modules(info, section):
                missing.append(f"{section}: {module_name} ({', '.join(o.__name__ for o in defined)})")
    assert not missing, missing


def test_hooks_use_the_kubernetes_connection_type_of_the_cncf_provider():
    from airflow_provider_kbatch.hooks.kbatch import AsyncKbatchHook, KbatchHook

    assert KbatchHook.conn_type == AsyncKbatchHook.conn_type == "kubernetes"
    assert KbatchHook.default_conn_name == "kubernetes_default"


def test_airflow_providers_list_shows_the_provider(airflow_env):
    providers = _json_out(airflow_env.run("providers", "list", "-o", "json"))
    ours = [p for p in providers if p["package_name"] == PACKAGE]
    assert len(ours) == 1, [p["package_name"] for p in providers]
    assert ours[0]["version"] == airflow_provider_kbatch.__version__
    assert "Kubernetes Jobs" in ours[0]["description"]


def test_airflow_providers_get_shows_our_modules(airflow_env):
    full = _json_out(airflow_env.run("providers", "get", PACKAGE, "--full", "-o", "json"))
    info = full[0] if isinstance(full, list) else full
    for section, expected in PUBLIC.items():
        assert set(expected) <= set(_modules(info, section)), section


def test_airflow_providers_triggers_lists_ours(airflow_env):
    triggers = _json_out(airflow_env.run("providers", "triggers", "-o", "json"))
    ours = {t["class"] for t in triggers if t["package_name"] == PACKAGE}
    assert ours == set(_modules(get_provider_info(), "triggers"))
    assert "airflow_provider_kbatch.triggers.job" in ours


def test_airflow_providers_hooks_has_the_connection_type_our_hooks_use(airflow_env):
    """Our hooks register no connection type of their own: they reuse ``kubernetes`` (cncf), which
    must therefore be there; a second registration of it by us would shadow the cncf form."""
    hooks = _json_out(airflow_env.run("providers", "hooks", "-o", "json"))
    kubernetes = [h for h in hooks if h["connection_type"] == "kubernetes"]
    assert (
        len(kubernetes) == 1 and kubernetes[0]["package_name"] == "apache-airflow-providers-cncf-kubernetes"
    )
    assert not [h for h in hooks if h["package_name"] == PACKAGE]
