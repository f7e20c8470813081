"""Errors raised by the in-container helper.

Every error is a ``ValueError`` subclass so callers that only know "bad input" can catch it, and
every message names what was wrong, what was expected and what was found.
"""

from __future__ import annotations


class KbatchRuntimeError(ValueError):
    """Base class of every error raised by :mod:`airflow_provider_kbatch.runtime`."""


class ConfigError(KbatchRuntimeError):
    """A ``KBATCH_*`` environment variable is missing or malformed."""


class ContractViolation(KbatchRuntimeError):
    """Records or a manifest do not satisfy a data contract."""


class ManifestError(KbatchRuntimeError):
    """A data manifest (or a per-index part) is missing, malformed or inconsistent."""


class InputVerificationError(ManifestError):
    """An input's files do not match its manifest (size or sha256), so it must not be read."""
