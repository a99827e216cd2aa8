"""The DAG on a real Airflow: api-server, scheduler, dag-processor and triggerer on PostgreSQL."""

from __future__ import annotations

import pytest

from api_poller.local_airflow import postgres_reachable
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
