"""The whole DAG, run by Airflow against the partner-API simulator and moto's S3/SQS."""

from __future__ import annotations

import pytest
from api_poller_dev.simulator import SimulatorConfig, run_in_thread

from api_poller.adapters.progress import load_job_progress
from tests.helpers import (
    DEAD_LETTER_QUEUE,
    PROCESSED_BUCKET,
    QUEUE,
    RAW_BUCKET,
    fetch_task_names,
    run_job,
    task_states,
)

pytestmark = pytest.mark.e2e


def test_full_sync_processes_every_record_exactly_once(airflow_db, aws):
    config = SimulatorConfig(total_records=1234, page_size=100, latency_ms=(0, 50), error_rate=0.1, seed=7)
    with run_in_thread(config) as base_url:
        dag_run = run_job({"url": f"{base_url}/payload", "fetch_tasks": 3, "concurrency": 12})

    assert str(dag_run.state) == "success", task_states(dag_run)
    ids = [record["id"] for record in aws.processed_records()]
    assert sorted(ids) == list(range(1234))  # every record, none twice
    # Each fetch task's batch is a page range, and the UI names the task after it.
    assert fetch_task_names(dag_run) == [
        "page-000000 .. page-000004",
        "page-000005 .. page-000008",
        "page-000009 .. page-000012",
    ]
    # Raw pages are deleted once processed (the tasks' status checkpoints stay for the retention).
    assert [key for key in aws.keys(RAW_BUCKET) if "/status/" not in key] == []
    assert aws.queue_depth(QUEUE) == 0
    assert aws.queue_depth(DEAD_LETTER_QUEUE) == 0
    assert len(aws.keys(PROCESSED_BUCKET)) == 13
    assert load_job_progress("api_poller", dag_run.run_id) == {
        "Started": 0,
        "PayloadSaved": 0,
        "Enqueued": 0,
        "SuccessfullyCompleted": 13,
        "FailedToComplete": 0,
        "Total": 13,
    }


def test_a_page_that_keeps_failing_processing_is_dead_lettered(airflow_db, aws):
    config = SimulatorConfig(total_records=500, latency_ms=0, error_rate=0.0, poison_pages=frozenset({2}))
    with run_in_thread(config) as base_url:
        dag_run = run_job({"url": f"{base_url}/payload", "fetch_tasks": 1})

    states = task_states(dag_run)
    assert states["process.consume_page_messages"] == "success"
    assert states["report"] == "failed"  # an incomplete job is visibly not a success
    assert aws.queue_depth(DEAD_LETTER_QUEUE) == 1
    assert aws.queue_depth(QUEUE) == 0
    ids = sorted(record["id"] for record in aws.processed_records())
    assert ids == [i for i in range(500) if not 200 <= i < 300]
    progress = load_job_progress("api_poller", dag_run.run_id)
    assert progress["SuccessfullyCompleted"] == 4
    assert progress["FailedToComplete"] == 1
    assert progress["Total"] == 5
