"""Certificates and keys of the development cluster, written once and kept: the cluster's CA, the
API server's serving certificate and the service-account signing key (``ensure_pki``), and the
process node's self-signed kubelet serving certificate (``ensure_self_signed``)."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _san(host: str) -> x509.GeneralName:
    """An IP address or a DNS name, as a subject alternative name."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _cert(
    subject: str,
    key: rsa.RSAPrivateKey,
    issuer_name: x509.Name | None,
    issuer_key: rsa.RSAPrivateKey,
    *,
    ca: bool,
    sans: list[x509.GeneralName] | None = None,
    days: int = 3650,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def ensure_pki(directory: Path) -> dict[str, Path]:
    """Create (once) and return the paths of ``ca.crt``, ``apiserver.crt/.key`` and ``sa.key/.pub``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "ca_cert": directory / "ca.crt",
        "ca_key": directory / "ca.key",
        "serving_cert": directory / "apiserver.crt",
        "serving_key": directory / "apiserver.key",
        "sa_key": directory / "sa.key",
        "sa_pub": directory / "sa.pub",
    }
    if all(p.exists() for p in paths.values()):
        return paths
    ca_key = _key()
    ca = _cert("kbatch-devcluster-ca", ca_key, None, ca_key, ca=True)
    serving_key = _key()
    hosts = (
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "127.0.0.1",
        "10.96.0.1",
    )
    sans = [_san(host) for host in hosts]
    serving = _cert("kube-apiserver", serving_key, ca.subject, ca_key, ca=False, sans=sans)
    sa_key = _key()
    _write_key(paths["ca_key"], ca_key)
    _write_cert(paths["ca_cert"], ca)
    _write_key(paths["serving_key"], serving_key)
    _write_cert(paths["serving_cert"], serving)
    _write_key(paths["sa_key"], sa_key)
    paths["sa_pub"].write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return paths


def ensure_self_signed(
    cert_path: Path, key_path: Path, subject: str, hosts: Iterable[str], *, days: int = 365
) -> tuple[Path, Path]:
    """A self-signed serving certificate for ``hosts`` (IP addresses or DNS names) and its key.

    An existing pair is kept while the certificate stays valid for more than a day.
    """
    if cert_path.exists() and key_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        renew_at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
        if cert.not_valid_after_utc > renew_at:
            return cert_path, key_path
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key = _key()
    cert = _cert(subject, key, None, key, ca=False, sans=[_san(host) for host in hosts], days=days)
    _write_key(key_path, key)
    _write_cert(cert_path, cert)
    return cert_path, key_path
