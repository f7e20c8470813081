"""The dev cluster's certificates: one module makes them all (pki.py)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from cryptography import x509

from airflow_provider_kbatch.devcluster.pki import ensure_pki, ensure_self_signed
from airflow_provider_kbatch.devcluster.processnode.server import ensure_serving_cert


def _sans(path: Path) -> tuple[list[str], list[str]]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = [str(ip) for ip in names.get_values_for_type(x509.IPAddress)]
    return names.get_values_for_type(x509.DNSName), ips


def test_the_cluster_pki_has_a_ca_and_an_api_server_certificate_it_issued(tmp_path: Path) -> None:
    paths = ensure_pki(tmp_path)
    ca = x509.load_pem_x509_certificate(paths["ca_cert"].read_bytes())
    serving = x509.load_pem_x509_certificate(paths["serving_cert"].read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert serving.issuer == ca.subject
    serving.verify_directly_issued_by(ca)
    dns, ips = _sans(paths["serving_cert"])
    assert dns == ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"]
    assert ips == ["127.0.0.1", "10.96.0.1"]
    before = paths["ca_cert"].read_bytes()
    assert ensure_pki(tmp_path) == paths and paths["ca_cert"].read_bytes() == before  # written once


def test_the_kubelet_certificate_is_self_signed_for_loopback_and_the_node_names(tmp_path: Path) -> None:
    cert_path, key_path = ensure_serving_cert(tmp_path, ["kbatch-node-0", "kbatch-node-1"])
    assert (cert_path.name, key_path.name) == ("kubelet.crt", "kubelet.key")
    assert oct(key_path.stat().st_mode & 0o777) == "0o600"
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert cert.subject == cert.issuer
    assert cert.subject.rfc4514_string() == "CN=kbatch-process-node"
    assert _sans(cert_path) == (["localhost", "kbatch-node-0", "kbatch-node-1"], ["127.0.0.1"])
    before = cert_path.read_bytes()
    assert ensure_serving_cert(tmp_path, ["kbatch-node-0"]) == (cert_path, key_path)
    assert cert_path.read_bytes() == before  # kept across restarts


def test_a_self_signed_certificate_close_to_expiry_is_renewed(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.crt", tmp_path / "c.key"
    ensure_self_signed(cert, key, "x", ["::1"], days=1)
    first = cert.read_bytes()
    ensure_self_signed(cert, key, "x", ["::1"])
    assert cert.read_bytes() != first
    assert _sans(cert)[1] == [str(ipaddress.ip_address("::1"))]
