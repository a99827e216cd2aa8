"""The DAG on a real Airflow: api-server, scheduler, dag-processor and triggerer on PostgreSQL."""

from __future__ import annotations

import pytest
from api_poller_dev.local_airflow import postgres_reachable

from tests.helpers import real_airflow_stack

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not postgres_reachable(), reason="PostgreSQL is not reachable on 127.0.0.1:5432"),
]


@pytest.fixture(scope="module")
def stack():
    """moto, the simulator and a real Airflow (LocalExecutor on PostgreSQL), all on 127.0.0.1."""
    simulator_args = ["--total-records=3000", "--latency-ms=0-200", "--error-rate=0.1", "--seed=3"]
    with real_airflow_stack("real-airflow", simulator_args) as stack:
        yield stack


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


def test_pages_are_processed_while_the_fetch_goes_on(stack):
    """The consumer runs alongside the fetch tasks: the first pages land in the processed bucket
    before the last fetch task ends (30 pages, one request in flight: the fetch takes seconds)."""
    from datetime import datetime

    from api_poller.core.keys import processed_prefix
    from tests.helpers import PROCESSED_BUCKET

    airflow, url, aws = stack
    run_id = airflow.trigger("api_poller", {"url": url, "concurrency": 1})
    assert airflow.wait_for_run("api_poller", run_id, timeout=300) == "success"
    tis = airflow.task_instances("api_poller", run_id)
    fetch_end = max(datetime.fromisoformat(ti["end_date"]) for ti in tis if ti["task_id"] == "fetch_pages")
    listing = aws.s3.list_objects_v2(Bucket=PROCESSED_BUCKET, Prefix=processed_prefix(run_id))["Contents"]
    assert len(listing) == 30
    first_processed = min(item["LastModified"] for item in listing)
    assert first_processed < fetch_end, (first_processed, fetch_end)
