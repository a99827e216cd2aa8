"""The DAG on a real Airflow: api-server, scheduler, dag-processor and triggerer on PostgreSQL."""

from __future__ import annotations

import pytest
from api_poller_dev.local_airflow import postgres_reachable

from tests.helpers import real_airflow_stack

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not postgres_reachable(), reason="PostgreSQL is not reachable on 127.0.0.1:5432"),
]


# A sources folder for the DAG factory: a walked source (cursor) on the simulator, and a broken file.
SOURCE = "sim_cursor"
SOURCE_FILES = {
    f"{SOURCE}.yaml": (
        f"name: {SOURCE}\nconnection_id: sim_partner\npath: /cursor/items\nrecords: items\n"
        "primary_key: id\npaginator: {type: cursor, cursor_path: next_cursor, page_size: 100}\n"
    ),
    "broken.yaml": "name: broken\nconnection_id: sim_partner\npath: /cursor/items\nrecords: items\n",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """moto, the simulator and a real Airflow (LocalExecutor on PostgreSQL), all on 127.0.0.1."""
    simulator_args = ["--total-records=3000", "--latency-ms=0-200", "--error-rate=0.1", "--seed=3"]
    sources = tmp_path_factory.mktemp("sources")
    for file, text in SOURCE_FILES.items():
        (sources / file).write_text(text)
    extra_env = {"API_POLLER_SOURCES_FOLDER": str(sources)}
    with real_airflow_stack("real-airflow", simulator_args, extra_env) as stack:
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


def test_the_factorys_source_dag_runs_to_success_next_to_a_broken_source_file(stack):
    """On a real dag-processor: the broken file is an import error of the errors file only, the
    valid source's DAG is neither stale nor flagged, and a walked job completes."""
    from urllib.parse import urlsplit

    from api_poller.core.keys import processed_prefix

    airflow, url, aws = stack
    partner = urlsplit(url)
    airflow.request(
        "POST",
        "/api/v2/connections",
        {"connection_id": "sim_partner", "conn_type": "http", "host": partner.hostname,
         "port": partner.port, "schema": "http"},
    )  # fmt: skip
    dag_id = f"api_poller__{SOURCE}"
    airflow.wait_for_dag(dag_id)
    errors = airflow.request("GET", "/api/v2/importErrors")["import_errors"]
    assert [error["filename"] for error in errors] == ["api_poller_source_errors.py"], errors
    assert "broken.yaml: paginator: is required" in errors[0]["stack_trace"]
    dag = airflow.request("GET", f"/api/v2/dags/{dag_id}")
    assert dag["is_stale"] is False and dag["has_import_errors"] is False

    run_id = airflow.trigger(dag_id, {})
    state = airflow.wait_for_run(dag_id, run_id, timeout=300)
    tasks = {(ti["task_id"], ti["map_index"]): ti["state"] for ti in airflow.task_instances(dag_id, run_id)}
    assert state == "success", tasks
    ids = sorted(record["id"] for record in aws.processed_records(processed_prefix(run_id)))
    assert ids == list(range(3000))
