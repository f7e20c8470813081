"""The one place where a kbatch error becomes an Airflow outcome: final or retryable.

:class:`~airflow_provider_kbatch.errors.KbatchError` says whether a retry could help (``final``);
:func:`airflow_errors` raises ``AirflowFailException`` for a final error (the task fails without
its retries) and ``AirflowException`` otherwise. An invalid stage becomes
:class:`KbatchInvalidStage`, which is both a :class:`KbatchSpecErrors` naming every field and an
``AirflowFailException``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_provider_kbatch.errors import KbatchError
from airflow_provider_kbatch.spec.errors import KbatchSpecError, KbatchSpecErrors


class KbatchInvalidStage(KbatchSpecErrors, AirflowFailException):
    """The stage description is invalid; nothing was submitted. Still a :class:`KbatchSpecError`
    naming every field, and an ``AirflowFailException``: no retry can fix the task's arguments."""

    def _render(self) -> str:
        return str(self.errors[0]) if len(self.errors) == 1 else super()._render()


def as_airflow(err: KbatchError) -> AirflowException:
    """The Airflow exception a kbatch error ends the task with."""
    if isinstance(err, KbatchSpecError):
        return KbatchInvalidStage(err.errors if isinstance(err, KbatchSpecErrors) else (err,))
    return AirflowFailException(str(err)) if err.final else AirflowException(str(err))


@contextlib.contextmanager
def airflow_errors() -> Iterator[None]:
    """Turn a :class:`KbatchError` raised inside into its Airflow outcome (see :func:`as_airflow`)."""
    try:
        yield
    except KbatchError as err:
        if isinstance(err, AirflowException):  # already decided (KbatchInvalidStage)
            raise
        raise as_airflow(err) from None
