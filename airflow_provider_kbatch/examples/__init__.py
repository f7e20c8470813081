"""Stage programs of the example DAGs (``dags/examples``). Standard library and ``runtime`` only,
so they run in the slim example worker image (``docker/worker.Dockerfile``) as well as on the
local process node."""

from __future__ import annotations
