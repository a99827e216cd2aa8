"""The DAG on a real Airflow: api-server, scheduler, dag-processor and triggerer on PostgreSQL."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from api_poller.local_airflow import postgres_reachable, running_airflow, scratch_postgres_database
from api_poller.local_stack import aws_connection, moto_server, simulator_server
from tests.helpers import AwsClients

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not postgres_reachable(), reason="PostgreSQL is not reachable on 127.0.0.1:5432"),
]


@pytest.fixture(scope="module")
def stack():
    """moto, the simulator and a real Airflow (LocalExecutor on PostgreSQL), all on 127.0.0.1."""
    import boto3

    workdir = Path(tempfile.mkdtemp(prefix="api-poller-real-airflow-"))
    simulator_args = ["--total-records=3000", "--latency-ms=0-200", "--error-rate=0.1", "--seed=3"]
    with (
        moto_server(workdir) as endpoint,
        simulator_server(workdir, simulator_args) as partner_url,
        scratch_postgres_database() as database_url,
        running_airflow(
            workdir / "airflow",
            database_url=database_url,
            extra_env={
                "AIRFLOW_CONN_AWS_DEFAULT": aws_connection(endpoint),
                "API_POLLER_RETRY_INITIAL_SECONDS": "0.05",
                "API_POLLER_PROCESS_RETRY_DELAY_SECONDS": "0",
            },
        ) as airflow,
    ):
        airflow.wait_for_dag("api_poller")
        aws = AwsClients(
            boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1"),
            boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1"),
        )
        yield airflow, f"{partner_url}/payload", aws


def test_a_job_triggered_through_the_rest_api_completes(stack):
    airflow, url, aws = stack
    run_id = airflow.trigger("api_poller", {"url": url, "fetch_tasks": 3})
    state = airflow.wait_for_run("api_poller", run_id, timeout=300)
    tasks = {
        (ti["task_id"], ti["map_index"]): ti["state"] for ti in airflow.task_instances("api_poller", run_id)
    }
    assert state == "success", tasks
    assert sorted(index for task, index in tasks if task == "fetch_pages") == [0, 1, 2]
    ids = sorted(record["id"] for record in aws.processed_records())
    assert ids == list(range(3000))
