"""Test environment: a private Airflow home on SQLite, moto's server and the partner-API simulator.

Airflow reads its configuration at import time, so the environment is set here, before any test
module imports Airflow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import AwsClients

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="api-poller-test-airflow-"))

os.environ.update(
    {
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_HOME}/airflow.db",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        # Short waits so failure paths finish in seconds; the product defaults are the seed's.
        # The simulator runs on loopback, which the SSRF guard refuses unless allowed.
        "API_POLLER_URL_ALLOWLIST": "127.0.0.1",
        "API_POLLER_RETRY_INITIAL_SECONDS": "0.02",
        "API_POLLER_RETRY_MAX_SECONDS": "0.2",
        "API_POLLER_HTTP_TIMEOUT_SECONDS": "10",
        "API_POLLER_PROCESS_RETRY_DELAY_SECONDS": "0",
        "API_POLLER_PROCESS_POKE_SECONDS": "0.2",
        "API_POLLER_PROCESS_TIMEOUT_SECONDS": "120",
        # dag.test runs one task at a time: the process step must give way to the fetch tasks.
        "API_POLLER_PROCESS_YIELD_SECONDS": "2",
        "API_POLLER_STATUS_FLUSH_SECONDS": "0.2",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
)
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [str(ROOT / "include"), str(ROOT / "devtools"), os.environ.get("PYTHONPATH")])
)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated Airflow metadata database (SQLite) for this test session."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ,
    )
    return AIRFLOW_HOME


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's S3/SQS server on 127.0.0.1, reached through the ``aws_default`` connection."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps(
        {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"region_name": "us-east-1", "endpoint_url": endpoint},
        }
    )
    yield endpoint
    server.stop()


@pytest.fixture
def aws(moto_endpoint: str):
    """boto3 clients on the moto server, and a clean slate of buckets and queues."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    # moto's reset endpoint forgets every bucket and queue between tests.
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"))
    return AwsClients(s3, sqs)
