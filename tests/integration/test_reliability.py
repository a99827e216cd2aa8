"""Reliability on a real Airflow (PostgreSQL): concurrent jobs, SIGKILLed tasks, dead-letter redrive,
progress that never goes backwards while killed tasks are retried.

The promise: every record the partner API served is processed exactly once, or accounted for as
failed with a reason, and can be retried.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import threading
import urllib.parse

import pytest
from api_poller_dev.local_airflow import ADMIN_PASSWORD, ADMIN_USER, postgres_reachable
from api_poller_dev.simulator import SimulatorConfig, run_in_thread

from api_poller.core.keys import processed_prefix, raw_payload_key, raw_prefix
from api_poller.operations import redrive
from tests.helpers import (
    DEAD_LETTER_QUEUE,
    PROCESSED_BUCKET,
    QUEUE,
    RAW_BUCKET,
    AwsClients,
    real_airflow_stack,
    wait_until,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.faults,
    pytest.mark.skipif(not postgres_reachable(), reason="PostgreSQL is not reachable on 127.0.0.1:5432"),
]

RECORDS = 2000


@pytest.fixture(scope="module")
def stack():
    simulator_args = [f"--total-records={RECORDS}", "--latency-ms=100-500", "--error-rate=0.1", "--seed=11"]
    # One page at a time in the process step, so a kill can land mid-processing.
    extra_env = {"AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "1", "API_POLLER_PROCESS_WORKERS": "1"}
    with real_airflow_stack("reliability", simulator_args, extra_env) as stack:
        yield stack


def job_ids(aws: AwsClients, run_id: str) -> list:
    return sorted(record["id"] for record in aws.processed_records(processed_prefix(run_id)))


def summary_of(airflow, run_id: str) -> dict:
    path = f"/api/v2/dags/api_poller/dagRuns/{run_id}/taskInstances/report/xcomEntries/summary"
    return airflow.request("GET", path)["value"]


def wait_for_task(airflow, run_id: str, task_id: str, condition, timeout: float = 120.0) -> dict:
    """Poll the run's task instances until one of ``task_id`` satisfies ``condition``."""

    def matching() -> dict | None:
        instances = airflow.task_instances("api_poller", run_id)
        return next((ti for ti in instances if ti["task_id"] == task_id and condition(ti)), None)

    return wait_until(matching, timeout=timeout, message=f"{task_id} of {run_id} matched", interval=0.1)


def test_three_concurrent_jobs_share_one_queue_without_loss_or_duplicates(stack):
    airflow, url, aws = stack
    runs = [airflow.trigger("api_poller", {"url": url, "fetch_tasks": 2, "concurrency": 8}) for _ in range(3)]
    states = {run: airflow.wait_for_run("api_poller", run, timeout=400) for run in runs}
    assert set(states.values()) == {"success"}, states
    for run in runs:
        assert job_ids(aws, run) == list(range(RECORDS)), run
        assert summary_of(airflow, run)["reconciliation"]["complete"] is True
    assert aws.queue_depth(QUEUE) == 0
    assert aws.queue_depth(DEAD_LETTER_QUEUE) == 0


def test_a_fetch_task_killed_mid_fetch_is_retried_and_the_job_completes(stack):
    airflow, url, aws = stack
    run = airflow.trigger("api_poller", {"url": url, "fetch_tasks": 1, "concurrency": 2})
    victim = wait_for_task(airflow, run, "fetch_pages", lambda ti: ti["state"] == "running" and ti["pid"])
    wait_until(  # some pages saved, most not yet
        lambda: aws.keys(RAW_BUCKET, raw_prefix(run)) or aws.keys(PROCESSED_BUCKET, processed_prefix(run)),
        timeout=120,
        message=f"fetch_pages of {run} saved a page",
        interval=0.1,
    )
    os.kill(victim["pid"], signal.SIGKILL)
    assert airflow.wait_for_run("api_poller", run, timeout=400) == "success"
    fetch = [ti for ti in airflow.task_instances("api_poller", run) if ti["task_id"] == "fetch_pages"]
    assert fetch[0]["try_number"] >= 2  # Airflow retried it
    assert job_ids(aws, run) == list(range(RECORDS))


def test_a_consumer_killed_mid_processing_is_retried_and_the_job_completes(stack):
    airflow, url, aws = stack
    run = airflow.trigger("api_poller", {"url": url, "fetch_tasks": 2, "concurrency": 16})
    victim = wait_for_task(
        airflow,
        run,
        "process.consume_page_messages",
        lambda ti: (
            ti["state"] == "running" and ti["pid"] and aws.keys(PROCESSED_BUCKET, processed_prefix(run))
        ),
        timeout=300,
    )
    os.kill(victim["pid"], signal.SIGKILL)
    assert airflow.wait_for_run("api_poller", run, timeout=400) == "success"
    consumer = wait_for_task(airflow, run, "process.consume_page_messages", lambda ti: True)
    assert consumer["try_number"] >= 2
    assert job_ids(aws, run) == list(range(RECORDS))
    assert aws.queue_depth(QUEUE) == 0


def test_a_dead_lettered_page_is_accounted_for_then_redriven_to_completion(stack, capsys):
    airflow, _, aws = stack
    poisoned = SimulatorConfig(total_records=500, latency_ms=0, error_rate=0.0, poison_pages=frozenset({1}))
    with run_in_thread(poisoned) as base_url:
        run = airflow.trigger("api_poller", {"url": f"{base_url}/payload", "fetch_tasks": 1})
        assert airflow.wait_for_run("api_poller", run, timeout=300) == "failed"

    summary = summary_of(airflow, run)
    assert summary["progress"]["FailedToComplete"] == 1
    assert "record 0 has no 'id'" in summary["failedPages"]["page-000001"]
    assert summary["reconciliation"]["pagesMissing"] == ["page-000001"]
    assert aws.queue_depth(DEAD_LETTER_QUEUE) == 1

    # The fix: the raw page gets its ids back (as a corrected upstream or parser would).
    key = raw_payload_key(run, "page-000001")
    document = json.loads(aws.s3.get_object(Bucket=RAW_BUCKET, Key=key)["Body"].read())
    for offset, record in enumerate(document["payload"], start=100):
        record["id"] = offset
    aws.s3.put_object(Bucket=RAW_BUCKET, Key=key, Body=json.dumps(document).encode())

    # The documented command: credentials from the environment, the job API does the redrive.
    credentials = {redrive.USERNAME_VARIABLE: ADMIN_USER, redrive.PASSWORD_VARIABLE: ADMIN_PASSWORD}
    assert redrive.main(["--job-id", run, "--airflow-url", airflow.base_url], credentials) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["Moved"] == ["page-000001"] and answer["Failed"] == {}
    assert answer["ClearedTasks"] == 3  # the consumer, the report and end_of_job
    assert airflow.wait_for_run("api_poller", run, timeout=300) == "success"

    summary = summary_of(airflow, run)
    assert summary["progress"]["FailedToComplete"] == 0
    assert summary["progress"]["SuccessfullyCompleted"] == 5
    assert job_ids(aws, run) == list(range(500))
    assert aws.queue_depth(DEAD_LETTER_QUEUE) == 0


PROGRESS_STEPS = ["Started", "PayloadSaved", "Enqueued", "SuccessfullyCompleted", "FailedToComplete"]


def poll_progress(airflow, run_id: str, history: list[dict], stop: threading.Event) -> None:
    """GET /api-poller/jobs/{id} every 0.5 s until the run ends (or ``stop``)."""
    path = f"/api-poller/jobs/{urllib.parse.quote(run_id, safe='')}"
    while not stop.is_set():
        progress = airflow.request("GET", path)
        history.append(progress)
        if progress["State"] in ("success", "failed"):
            return
        stop.wait(0.5)


def running(ti: dict) -> bool:
    return ti["state"] == "running" and bool(ti["pid"])


def test_progress_never_goes_backwards_while_killed_fetch_and_consumer_tasks_are_retried(stack):
    airflow, _, aws = stack
    # Slow pages (0.4-0.8 s, two at a time per task): the job lasts long enough to kill both mid-way.
    slow = SimulatorConfig(total_records=4000, latency_ms=(400, 800), error_rate=0.0)
    with run_in_thread(slow) as base_url:
        conf = {"url": f"{base_url}/payload", "fetch_tasks": 2, "concurrency": 2}
        run = airflow.trigger("api_poller", conf)
        history: list[dict] = []
        stop = threading.Event()
        poller = threading.Thread(target=poll_progress, args=(airflow, run, history, stop), daemon=True)
        poller.start()
        try:
            fetch = wait_for_task(airflow, run, "fetch_pages", running)
            wait_until(  # the killed fetch task and the consumer have published some progress
                lambda: history and history[-1]["SuccessfullyCompleted"] >= 3,
                timeout=120,
                message=f"{run} completed some pages",
                interval=0.1,
            )
            os.kill(fetch["pid"], signal.SIGKILL)
            consumer = wait_for_task(airflow, run, "process.consume_page_messages", running, timeout=60)
            wait_until(  # the consumer goes on processing the other fetch task's pages meanwhile
                lambda: history[-1]["SuccessfullyCompleted"] >= 8,
                timeout=120,
                message=f"{run} completed more pages",
                interval=0.1,
            )
            os.kill(consumer["pid"], signal.SIGKILL)
            assert airflow.wait_for_run("api_poller", run, timeout=400) == "success"
            poller.join(timeout=30)
        finally:
            stop.set()

    instances = airflow.task_instances("api_poller", run)
    tries = {(ti["task_id"], ti["map_index"]): ti["try_number"] for ti in instances}
    assert tries[("fetch_pages", fetch["map_index"])] >= 2  # both were really retried
    assert tries[("process.consume_page_messages", -1)] >= 2
    # No count of pages at or past a lifecycle step ever drops (FailedToComplete counts as past
    # every step), across both kills and retries.
    at_or_past = {step: PROGRESS_STEPS[index:] for index, step in enumerate(PROGRESS_STEPS[:4])}
    for earlier, later in itertools.pairwise(history):
        for step, states in at_or_past.items():
            assert sum(later[k] for k in states) >= sum(earlier[k] for k in states), (step, earlier, later)
    final = history[-1]
    assert final["State"] == "success"
    assert final["SuccessfullyCompleted"] == final["Total"] == 40
    assert job_ids(aws, run) == list(range(4000))
