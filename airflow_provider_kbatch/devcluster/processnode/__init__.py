"""The process node: a stand-in for the kubelet that runs each container as a local process.

Entry point: ``python -m airflow_provider_kbatch.devcluster.node``. The modules here are its parts:

- ``podenv``: container environment (``env``, ``envFrom``, ``fieldRef``, ``resourceFieldRef``)
  and ``$(VAR)`` expansion, pure.
- ``podstatus``: container states, pod phase and conditions as the kubelet reports them, pure.
- ``launch``: the command line that puts a container in its own mount namespace, mounts its
  volumes and drops to its user, pure.
- ``volumes``: materialises volumes (emptyDir, configMap, secret, projected, PVC, hostPath).
- ``containerlogs``: CRI-format log files and the reader behind ``/containerLogs``.
- ``kubeapi``: a small asyncio client over raw JSON (no model classes: cheap at 1,000 pods).
- ``provisioner``: the ``kbatch.io/process-node`` volume provisioner.
- ``procs``: container processes on the event loop (pidfd, pipes), sweeps, the memory limit.
- ``podapi``: the API calls of one pod (references, tokens, status patches, Events, deletion).
- ``pods``: one pod's lifecycle on the node.
- ``server``: the kubelet HTTPS endpoint and the node's unix control socket.

A development tool, not a sandbox: processes share the host's filesystem, network and PID space.
"""

from __future__ import annotations
