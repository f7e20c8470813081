"""The process node: a stand-in for the kubelet that runs each container as a local process.

Entry point: ``python -m airflow_provider_kbatch.devcluster.node``. The modules here are its parts,
each importing only those above it:

- ``podenv``: container environment (``env``, ``envFrom``, ``fieldRef``, ``resourceFieldRef``
  with quantities read by ``spec.quantity``) and ``$(VAR)`` expansion, pure.
- ``podstatus``: container states, pod phase and conditions as the kubelet reports them, the
  restart rule, what a node restart leaves of a container, pure (timestamps read by
  ``spec.times``).
- ``launch``: the command line that puts a container in its own mount namespace, mounts its
  volumes and drops to its user, pure.
- ``host``: what this machine contributes: the Node object a kubelet registers, the environment
  every container starts from, the host tools.
- ``volumes``: materialises volumes (emptyDir, configMap, secret, projected, PVC, hostPath).
- ``containerlogs``: CRI-format log files and the reader behind ``/containerLogs``
  (``sinceTime`` read by ``spec.times``).
- ``kubeapi``: a small asyncio client over raw JSON (no model classes: cheap at 1,000 pods); its
  retries are ``hooks.retry.RetryPolicy``'s, its ``Informer`` is ``hooks.watch.resumable_watch``
  under a policy that never gives up.
- ``nodeapi``: the API calls of the node's Nodes (registration, status, not-ready taint, Lease).
- ``provisioner``: the ``kbatch.io/process-node`` volume provisioner.
- ``procs``: container processes on the event loop (pidfd, pipes), sweeps, the memory limit.
- ``podapi``: the API calls of one pod (references, tokens, status patches, Events, deletion).
- ``podsync``: what the node reports for one pod, and its coalesced ``pods/status`` patches.
- ``containers``: one attempt of a container (launch, start, stop within the grace deadline,
  reap) and its process; ``NodeContext``, what every pod worker shares.
- ``pods``: one pod's lifecycle on the node (``PodWorker`` decides; ``containers`` and
  ``podsync`` act).
- ``server``: the kubelet HTTPS endpoint and the node's unix control socket.
- ``simulated``: simulated nodes (scale mode): pods that end as their ``kbatch.io/simulate``
  annotation says, without a process; honest status transitions, no logs.

A development tool, not a sandbox: processes share the host's filesystem, network and PID space.
"""

from __future__ import annotations
