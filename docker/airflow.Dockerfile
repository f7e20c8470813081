# Airflow image with the kbatch provider. Build from the repository root:
#   docker build -f docker/airflow.Dockerfile -t kbatch-airflow:0.1.0 .
# The base is pinned to the Airflow and Python versions the test suite runs against.
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:root pyproject.toml README.md /opt/kbatch/
COPY --chown=airflow:root airflow_provider_kbatch /opt/kbatch/airflow_provider_kbatch
# The provider and its pinned Kubernetes dependencies; Airflow itself is already in the image.
RUN pip install --no-cache-dir "apache-airflow==3.3.2" /opt/kbatch \
 && python -c "import airflow_provider_kbatch.operators.job, airflow_provider_kbatch.triggers.job"
COPY --chown=airflow:root dags/examples /opt/airflow/dags/examples
