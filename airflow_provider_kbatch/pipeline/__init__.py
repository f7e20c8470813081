"""Pure pipeline logic: data contracts, data manifests, and the run ledger's record schema and merge rules.

Imports neither Airflow nor the Kubernetes clients; the checks shared with pods come from
:mod:`airflow_provider_kbatch.runtime` (standard library only), index sets from
:mod:`airflow_provider_kbatch.spec.intervals`.
"""

from __future__ import annotations
