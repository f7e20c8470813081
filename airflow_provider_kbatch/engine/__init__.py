"""The stage engine: drives one stage through a hook -- plan and submit, wait, gather the
outcome, record it in the run ledger.

Typed against :mod:`airflow_provider_kbatch.engine.protocol` (the hook's methods it uses), never
against the Kubernetes clients or Airflow: the Airflow glue (operators, sensors, triggers) hands
it a :class:`~airflow_provider_kbatch.hooks.kbatch.KbatchHook` or
:class:`~airflow_provider_kbatch.hooks.kbatch.AsyncKbatchHook`, unit tests hand it a fake.
"""
