"""The options kbatch reads from Airflow's configuration, each read in one place.

Every option is declared in the provider info (``get_provider_info()["config"]``), so
``airflow config get-value kbatch <option>`` and ``airflow config list`` show it with its default.
"""

from __future__ import annotations

from airflow.providers.common.compat.sdk import conf

EVENT_HOLD_DEFAULT = 6.0


def event_hold_seconds() -> float:
    """How long after the deferral a trigger holds an early event (apache/airflow#72716).

    ``[kbatch] trigger_event_hold_seconds``, 6 s by default: a trigger that fires within seconds
    of the deferral can have the task marked failed by Airflow 3.3 ("state changed externally").
    """
    try:
        return max(
            0.0, float(conf.getfloat("kbatch", "trigger_event_hold_seconds", fallback=EVENT_HOLD_DEFAULT))
        )
    except (TypeError, ValueError):
        return EVENT_HOLD_DEFAULT


def default_deferrable() -> bool:
    """Deferrable unless ``[operators] default_deferrable`` was explicitly changed from its default."""
    try:
        value = conf.get("operators", "default_deferrable", fallback=None)
        default = conf.get_default_value("operators", "default_deferrable")
    except Exception:
        return True
    if value is not None and str(value).lower() != str(default).lower():
        return str(value).lower() in ("true", "1", "yes", "on")
    return True
