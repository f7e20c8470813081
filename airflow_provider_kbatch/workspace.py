"""Public import path of :class:`Workspace` (DESIGN.md): DAG files write
``from airflow_provider_kbatch.workspace import Workspace``.

The pipeline rules live in :mod:`airflow_provider_kbatch.pipeline.workspace`; this module only
re-exports the public name, so it stays valid when the code behind it moves.
"""

from __future__ import annotations

from airflow_provider_kbatch.pipeline.workspace import Workspace

__all__ = ["Workspace"]
