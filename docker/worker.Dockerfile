# Example worker image: the stdlib-only runtime helper and the example stage programs, nothing
# else (no Airflow, no Kubernetes client). The example DAGs run
#   python -m airflow_provider_kbatch.examples.<stage>
# exactly as the tests do on the local process node. Build from the repository root:
#   docker build -f docker/worker.Dockerfile -t ghcr.io/example/kbatch-worker:0.1.0 .
FROM python:3.11.10-slim-bookworm
# Non-root, matching the operator's restricted Pod Security defaults (runAsUser/runAsGroup 1000).
RUN groupadd --gid 1000 kbatch && useradd --uid 1000 --gid 1000 --no-create-home kbatch
WORKDIR /app
# Only the in-container parts of the package: its __init__ (imports nothing heavy), runtime/
# (stdlib only) and the example stages.
COPY airflow_provider_kbatch/__init__.py /app/airflow_provider_kbatch/__init__.py
COPY airflow_provider_kbatch/runtime /app/airflow_provider_kbatch/runtime
COPY airflow_provider_kbatch/examples /app/airflow_provider_kbatch/examples
ENV PYTHONPATH=/app PYTHONUNBUFFERED=1
RUN python -c "from airflow_provider_kbatch import runtime; import airflow_provider_kbatch.examples.square, \
airflow_provider_kbatch.examples.ingest, airflow_provider_kbatch.examples.transform, \
airflow_provider_kbatch.examples.publish, airflow_provider_kbatch.examples.checkpointed"
USER 1000:1000
