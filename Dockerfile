# The project's image: the official Airflow image plus the locked dependencies and the
# api_poller library. Used by every Airflow service in docker-compose.yaml and by the
# partner-API simulator (partner-api service).
#
#   docker-compose build            # or: docker build -t airflow-api-poller .
#   docker build --build-arg AIRFLOW_IMAGE_TAG=3.3.2-python3.11 .
ARG AIRFLOW_IMAGE_TAG=3.3.2-python3.12
FROM apache/airflow:${AIRFLOW_IMAGE_TAG}

# Packages go to the airflow user's site (the official image's supported way to add them).
USER airflow

# requirements.txt is the hash-pinned lock (`uv pip compile --universal --generate-hashes`,
# python>=3.11). It pins apache-airflow==3.3.2 itself, so installing it keeps the Airflow of
# the base image instead of letting pip up- or downgrade it; it also pins the Celery and
# Postgres providers the compose stack uses.
COPY --chown=airflow:0 requirements.txt /opt/airflow/requirements.txt
RUN pip install --no-cache-dir --require-hashes -r /opt/airflow/requirements.txt

# The library (importable as `api_poller`). docker-compose.yaml also mounts ./include over it
# for development; the copy makes the image usable on its own.
COPY --chown=airflow:0 include/ /opt/airflow/include/
ENV PYTHONPATH=/opt/airflow/include
