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


def _consumer_runs_by_job(airflow) -> dict[str, list[str]]:
    """Snapshot job id -> the consumer runs that consumed its Asset event (and ended well)."""
    from api_poller import names

    consumer = names.SNAPSHOT_CONSUMER_DAG_ID
    runs = airflow.request("GET", f"/api/v2/dags/{consumer}/dagRuns?limit=100")["dag_runs"]
    by_job: dict[str, list[str]] = {}
    for run in runs:
        if run["state"] != "success":
            continue
        path = f"/api/v2/dags/{consumer}/dagRuns/{run['dag_run_id']}/upstreamAssetEvents"
        for event in airflow.request("GET", path)["asset_events"]:
            by_job.setdefault(event["extra"]["jobId"], []).append(run["dag_run_id"])
    return by_job


def test_the_snapshot_consumer_runs_once_per_complete_job_and_never_after_a_failed_one(stack):
    """On a real scheduler: each complete job's publish emits the source's Asset event, which
    starts the example consumer DAG once (it reads the manifest); publishing a job again emits
    nothing; a failed job starts nothing."""
    import urllib.error
    from urllib.parse import urlsplit

    from api_poller import names
    from tests.helpers import wait_until

    airflow, url, _ = stack
    partner = urlsplit(url)
    try:
        airflow.request(
            "POST",
            "/api/v2/connections",
            {"connection_id": "sim_partner", "conn_type": "http", "host": partner.hostname,
             "port": partner.port, "schema": "http"},
        )  # fmt: skip
    except urllib.error.HTTPError as error:
        assert error.code == 409  # another test of the module made it
    dag_id = f"api_poller__{SOURCE}"
    airflow.wait_for_dag(dag_id)
    airflow.wait_for_dag(names.SNAPSHOT_CONSUMER_DAG_ID)  # created paused; unpaused here

    first = airflow.trigger(dag_id, {})
    assert airflow.wait_for_run(dag_id, first, timeout=300) == "success"
    # Publishing the same job again (its publish step cleared) changes nothing and sends no event.
    airflow.request(
        "POST",
        f"/api/v2/dags/{dag_id}/clearTaskInstances",
        {"dry_run": False, "dag_run_id": first, "task_ids": ["publish"], "only_failed": False},
    )

    def republished() -> str | None:
        states = {ti["task_id"]: ti["state"] for ti in airflow.task_instances(dag_id, first)}
        return states["publish"] if states["publish"] in ("skipped", "success", "failed") else None

    outcome = wait_until(republished, timeout=120, message="the cleared publish step ran", interval=1)
    assert outcome == "skipped"
    assert airflow.wait_for_run(dag_id, first, timeout=60) == "success"
    failed = airflow.trigger(dag_id, {"url": "http://elsewhere.example/items"})  # refused by the plan
    assert airflow.wait_for_run(dag_id, failed, timeout=120) == "failed"
    second = airflow.trigger(dag_id, {})
    assert airflow.wait_for_run(dag_id, second, timeout=300) == "success"

    # The scheduler handles events in order: once the second job's consumer run has ended, the
    # failed job (between the two) would have had its run too.
    def consumed_second() -> dict[str, list[str]] | None:
        runs = _consumer_runs_by_job(airflow)
        return runs if second in runs else None

    by_job = wait_until(
        consumed_second,
        timeout=120,
        message="the consumer DAG ran for the second job",
        interval=1,
    )
    assert len(by_job[first]) == 1 and len(by_job[second]) == 1
    assert failed not in by_job
    (consumer_run,) = by_job[second]
    found = airflow.request(
        "GET",
        f"/api/v2/dags/{names.SNAPSHOT_CONSUMER_DAG_ID}/dagRuns/{consumer_run}/taskInstances/"
        "read_snapshot_manifests/xcomEntries/return_value",
    )["value"]
    assert [(item["jobId"], item["records"], item["source"]) for item in found] == [(second, 3000, SOURCE)]
