"""Airflow-facing helpers shared by the operators, sensors and triggers: settings read from
Airflow's configuration, Assets, metrics and the edge where an error becomes retryable or final.

Everything here may import Airflow; nothing below it (engine, pipeline, spec, status) may.
"""
