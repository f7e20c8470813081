from __future__ import annotations

import base64
from fractions import Fraction

import pytest

from airflow_provider_kbatch.devcluster.processnode.podenv import (
    ConfigError,
    ObjectSource,
    container_env,
    expand,
    expand_command,
    field_ref_value,
    referenced_objects,
    resource_field_value,
)
from airflow_provider_kbatch.spec.quantity import parse_quantity

POD = {
    "metadata": {
        "name": "job-3-abcde",
        "namespace": "ns1",
        "uid": "u-1",
        "labels": {"app": "x", "batch.kubernetes.io/job-completion-index": "3"},
        "annotations": {"batch.kubernetes.io/job-completion-index": "3"},
    },
    "spec": {
        "nodeName": "kbatch-node-0",
        "serviceAccountName": "default",
        "containers": [
            {
                "name": "main",
                "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "250m"}},
            }
        ],
    },
    "status": {"podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}], "hostIP": "127.0.0.1"},
}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Fraction(1, 2)),
        ("2", Fraction(2)),
        ("1.5", Fraction(3, 2)),
        ("2Gi", Fraction(2 * 2**30)),
        ("128974848", Fraction(128974848)),
        ("129M", Fraction(129 * 10**6)),
        ("1e3", Fraction(1000)),
        ("100n", Fraction(1, 10**7)),
    ],
)
def test_parse_quantity(text: str, value: Fraction) -> None:
    assert parse_quantity(text) == value


def test_parse_quantity_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_quantity("12XB")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(A)-$(B)", "a-b"),
        ("$(MISSING)", "$(MISSING)"),
        ("$$(A)", "$(A)"),
        ("$$", "$"),
        ("$(A", "$(A"),
        ("cost $5", "cost $5"),
        ("end$", "end$"),
        ("$(A)$(A)", "aa"),
        ("", ""),
    ],
)
def test_expand_follows_kubernetes_rules(text: str, expected: str) -> None:
    assert expand(text, {"A": "a", "B": "b"}.get) == expected


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("metadata.name", "job-3-abcde"),
        ("metadata.namespace", "ns1"),
        ("metadata.uid", "u-1"),
        ("metadata.annotations['batch.kubernetes.io/job-completion-index']", "3"),
        ("metadata.labels['app']", "x"),
        ("metadata.labels['nope']", ""),
        ("spec.nodeName", "kbatch-node-0"),
        ("status.podIP", "127.0.0.1"),
        ("status.podIPs", "127.0.0.1"),
        ("metadata.labels", 'app="x"\nbatch.kubernetes.io/job-completion-index="3"'),
    ],
)
def test_field_ref(path: str, value: str) -> None:
    assert field_ref_value(POD, path) == value


def test_field_ref_unknown_path_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        field_ref_value(POD, "spec.bogus")


@pytest.mark.parametrize(
    ("ref", "value"),
    [
        ({"resource": "limits.cpu"}, "1"),
        ({"resource": "limits.cpu", "divisor": "1m"}, "500"),
        ({"resource": "requests.cpu", "divisor": "1m"}, "250"),
        ({"resource": "limits.memory", "divisor": "1Mi"}, "256"),
        ({"resource": "limits.memory"}, str(256 * 2**20)),
        ({"resource": "limits.ephemeral-storage", "divisor": "1Gi"}, "100"),
    ],
)
def test_resource_field_ref(ref: dict[str, str], value: str) -> None:
    allocatable = {"cpu": "8", "memory": "16Gi", "ephemeral-storage": "100Gi"}
    assert resource_field_value(POD, "main", ref, allocatable) == value


def _secret(**data: str) -> dict[str, object]:
    return {"data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def test_container_env_order_sources_and_expansion() -> None:
    objects = ObjectSource(
        config_maps={"cm": {"data": {"FROM_CM": "cm-value", "SHARED": "from-cm", "bad=key": "x"}}},
        secrets={"sec": _secret(password="s3cret")},
    )
    container = {
        "name": "main",
        "envFrom": [{"configMapRef": {"name": "cm"}}, {"prefix": "S_", "secretRef": {"name": "sec"}}],
        "env": [
            {"name": "SHARED", "value": "from-env"},
            {"name": "INDEX", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "COMBINED", "value": "$(INDEX)-$(FROM_CM)-$(LATER)-$$(INDEX)"},
            {"name": "LATER", "value": "late"},
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}},
            {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}}},
            {"name": "CM_KEY", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "FROM_CM"}}},
        ],
    }
    env = container_env(
        POD, container, objects, allocatable={}, service_env={"KUBERNETES_SERVICE_HOST": "127.0.0.1"}
    )
    assert env["SHARED"] == "from-env"
    assert env["S_password"] == "s3cret"
    assert env["COMBINED"] == "x-cm-value-$(LATER)-$(INDEX)"
    assert env["PW"] == "s3cret"
    assert "OPT" not in env
    assert "bad=key" not in env
    assert env["CM_KEY"] == "cm-value"
    assert env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"


@pytest.mark.parametrize(
    "var",
    [
        {"name": "X", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}},
        {"name": "X", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "absent"}}},
        {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k"}}},
    ],
)
def test_missing_required_reference_is_a_config_error(var: dict[str, object]) -> None:
    objects = ObjectSource(secrets={"sec": _secret(password="p")}, config_maps={"absent": None})
    with pytest.raises(ConfigError):
        container_env(POD, {"name": "main", "env": [var]}, objects, allocatable={}, service_env={})


def test_expand_command_uses_final_environment() -> None:
    container = {"command": ["sh", "-c"], "args": ["echo $(A) $(B) $$(A)"]}
    assert expand_command(container, {"A": "1", "B": "2"}) == ["sh", "-c", "echo 1 2 $(A)"]


def test_referenced_objects_cover_env_and_volumes() -> None:
    pod = {
        "spec": {
            "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "s1"}}]}],
            "containers": [
                {
                    "name": "c",
                    "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "c1", "key": "k"}}}],
                }
            ],
            "volumes": [
                {"name": "v1", "configMap": {"name": "c2"}},
                {"name": "v2", "secret": {"secretName": "s2"}},
                {
                    "name": "v3",
                    "projected": {"sources": [{"configMap": {"name": "c3"}}, {"secret": {"name": "s3"}}]},
                },
            ],
        }
    }
    assert referenced_objects(pod) == ({"c1", "c2", "c3"}, {"s1", "s2", "s3"})
