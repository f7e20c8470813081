"""The options kbatch reads from Airflow's configuration, each read in one place.

Every option is declared in the provider info (``get_provider_info()["config"]``, section
``[kbatch]``), so ``airflow config get-value kbatch <option>`` and ``airflow config list`` show it
with its default; :data:`DEFAULTS` holds the same defaults (a test keeps both in step).
"""

from __future__ import annotations

import logging

from airflow.providers.common.compat.sdk import conf

log = logging.getLogger(__name__)

SECTION = "kbatch"
EVENT_HOLD_DEFAULT = 6.0
DEFERRABLE_DEFAULT = True
END_IN_TRIGGERER_DEFAULT = True
#: option -> default, for every option of ``[kbatch]``
DEFAULTS: dict[str, object] = {
    "trigger_event_hold_seconds": EVENT_HOLD_DEFAULT,
    "default_deferrable": DEFERRABLE_DEFAULT,
    "end_in_triggerer": END_IN_TRIGGERER_DEFAULT,
}


def event_hold_seconds() -> float:
    """How long after the deferral a trigger holds an early event (apache/airflow#72716).

    ``[kbatch] trigger_event_hold_seconds``, 6 s by default: a trigger that fires within seconds
    of the deferral can have the task marked failed by Airflow 3.3 ("state changed externally").
    """
    try:
        return max(
            0.0, float(conf.getfloat(SECTION, "trigger_event_hold_seconds", fallback=EVENT_HOLD_DEFAULT))
        )
    except (TypeError, ValueError):
        return EVENT_HOLD_DEFAULT


def default_deferrable() -> bool:
    """``[kbatch] default_deferrable`` (default True): whether kbatch's operators and sensors wait
    in the triggerer when their ``deferrable`` argument is not given.

    Airflow's own ``[operators] default_deferrable`` is deliberately not read: its default is
    False and the ``airflow.cfg`` Airflow generates writes ``default_deferrable = false`` out, so
    an explicit False cannot be told from the default. Honouring it would make kbatch wait in
    the worker on every fresh installation (DESIGN: deferrable by default); ignoring only its
    False (what kbatch did before) made an explicit ``False`` powerless. kbatch's own option has
    kbatch's default, and an explicit setting always wins.
    """
    try:
        return bool(conf.getboolean(SECTION, "default_deferrable", fallback=DEFERRABLE_DEFAULT))
    except Exception as err:  # a typo in the config: say so, keep the documented default
        log.warning("[kbatch] default_deferrable is not a boolean (%s); using %s", err, DEFERRABLE_DEFAULT)
        return DEFERRABLE_DEFAULT


def resolve_deferrable(deferrable: bool | None, *, mode_given: bool = False) -> bool:
    """The one rule for ``deferrable`` of every kbatch operator and sensor.

    1. ``deferrable=True`` / ``False`` passed to the class wins;
    2. else a sensor given an explicit ``mode=`` (``"poke"`` or ``"reschedule"``) waits that way;
    3. else ``[kbatch] default_deferrable`` (:func:`default_deferrable`, default True).
    """
    if deferrable is not None:
        if not isinstance(deferrable, bool):
            raise TypeError(f"deferrable must be True, False or None (the rule), got {deferrable!r}")
        return deferrable
    if mode_given:
        return False
    return default_deferrable()


def end_in_triggerer() -> bool:
    """``[kbatch] end_in_triggerer`` (default True): whether a deferred stage whose Job succeeded
    may end in the triggerer (``TaskSuccessEvent``) instead of resuming in a worker for
    ``execute_complete``, when nothing is left that needs a worker
    (:func:`airflow_provider_kbatch.engine.trigger_end.fallback_reasons`). An operator's
    ``end_in_triggerer=True/False`` wins over it."""
    try:
        return bool(conf.getboolean(SECTION, "end_in_triggerer", fallback=END_IN_TRIGGERER_DEFAULT))
    except Exception as err:  # a typo in the config: say so, keep the documented default
        log.warning(
            "[kbatch] end_in_triggerer is not a boolean (%s); using %s", err, END_IN_TRIGGERER_DEFAULT
        )
        return END_IN_TRIGGERER_DEFAULT


def custom_xcom_backend() -> bool:
    """Whether ``[core] xcom_backend`` names another class than Airflow's own ``BaseXCom``: a
    worker's XComs then go through it, while XComs a trigger ends its task with are written to
    the database as they are."""
    value = str(conf.get("core", "xcom_backend", fallback="") or "")
    return bool(value) and not (value.startswith("airflow.") and value.endswith(".BaseXCom"))
