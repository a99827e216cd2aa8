"""The AWS requests a job makes per page stay within a written budget.

A 20-page job of the seed DAG runs in process (``dag.test``) against the simulator and moto while
``bench.harness.aws_requests`` counts every request the tasks' botocore clients send, by operation.
Each operation may use ``per_page * pages + per_job`` requests. An operation the pipeline does not
use today has no budget at all, so a new request per page (an extra HEAD, say) fails the test, as
does one more of an existing kind per page: the per-job allowances are smaller than the page count.
Raising a budget is a decision: docs/cost.md (``bench/cost.py``) prices what it adds.
"""

from __future__ import annotations

import json
import math
from typing import NamedTuple

import pytest
from api_poller_dev.simulator import SimulatorConfig, run_in_thread

from api_poller import names
from api_poller.adapters.progress import load_job_progress
from bench.harness.aws_requests import airflow_task_label, counting_aws_requests
from tests.helpers import run_job, task_states

pytestmark = pytest.mark.e2e

PAGES = 20


class Budget(NamedTuple):
    per_page: float
    per_job: int


BUDGETS = {
    # Per page: the raw page (fetch) and its processed records (process step).
    "s3.PutObject": Budget(per_page=2, per_job=0),
    # Per page: the process step reads the raw page back.
    "s3.GetObject": Budget(per_page=1, per_job=0),
    # The status checkpoints are written per status flush, never per page: their budget follows
    # the status tasks' run time instead (see checkpoint_budgets). Read once per try (a
    # rescheduled consumer: per poke) and by the report: a summary and its one chunk (20 pages).
    "s3.GetObject[status checkpoint]": Budget(per_page=0, per_job=24),
    # Raw pages are deleted in batches once processed: one per received batch of up to 10 (a
    # quarter of a call per page leaves room for part-filled batches on a loaded machine).
    "s3.DeleteObjects": Budget(per_page=0.25, per_job=2),
    # No per-page listing: the fetch's check for pages already saved, the consumer's look for
    # pages processed elsewhere (every couple of idle seconds) and the report's reconciliation
    # (1 per 1,000 keys).
    "s3.ListObjectsV2": Budget(per_page=0.01, per_job=10),
    # The resources step: each bucket checked, created when missing.
    "s3.HeadBucket": Budget(per_page=0, per_job=2),
    "s3.CreateBucket": Budget(per_page=0, per_job=2),
    # The resources step: the queue and its dead-letter queue, the redrive policy; the consumer
    # reads the visibility timeout (and queue depth when it sweeps at the end).
    "sqs.CreateQueue": Budget(per_page=0, per_job=2),
    "sqs.GetQueueAttributes": Budget(per_page=0, per_job=4),
    "sqs.SetQueueAttributes": Budget(per_page=0, per_job=1),
    # Page pointers are announced 10 to a call, or fewer when no other page comes within 0.2 s.
    "sqs.SendMessageBatch": Budget(per_page=0.25, per_job=1),
    # Up to 10 messages a receive, plus 1 s long polls while the consumer waits (timing-dependent).
    "sqs.ReceiveMessage": Budget(per_page=0.25, per_job=12),
    # Processed messages are deleted 10 to a call (one call per received batch).
    "sqs.DeleteMessageBatch": Budget(per_page=0.25, per_job=2),
}


FLUSH_SECONDS = 0.2  # API_POLLER_STATUS_FLUSH_SECONDS in the tests (tests/conftest.py)
CHUNKS = 1  # 20 pages: one chunk of page records (core.status_document.CHUNK_PAGES)


def checkpoint_budgets(status_task_seconds: list[float]) -> dict[str, Budget]:
    """At most one flush per FLUSH_SECONDS of each status task instance's run (plus its first and
    last), each writing its summary and the chunks that changed: per job, not per page."""
    flushes = sum(math.ceil(seconds / FLUSH_SECONDS) + 2 for seconds in status_task_seconds)
    return {"s3.PutObject[status checkpoint]": Budget(per_page=0, per_job=flushes * (1 + CHUNKS))}


def status_task_seconds(dag_run) -> list[float]:
    """How long each status-publishing task instance ran."""
    from airflow.utils.session import create_session

    with create_session() as session:
        return [
            (ti.end_date - ti.start_date).total_seconds()
            for ti in dag_run.get_task_instances(session=session)
            if ti.task_id in names.STATUS_TASK_IDS and ti.start_date and ti.end_date
        ]


def over_budget(counts: dict[str, int], pages: int, extra: dict[str, Budget] | None = None) -> dict[str, str]:
    """The operations above their budget, each with what it used and what it may use."""
    budgets = {**BUDGETS, **(extra or {})}
    over = {}
    for operation, used in counts.items():
        budget = budgets.get(operation, Budget(0, 0))
        allowed = budget.per_page * pages + budget.per_job
        if used > allowed:
            rule = f"{budget.per_page:g}/page + {budget.per_job}"
            over[operation] = f"{used} requests, budget {allowed:g} ({rule})"
    return over


def test_aws_requests_per_page_stay_within_their_budget(airflow_db, aws):
    config = SimulatorConfig(total_records=PAGES * 100, page_size=100, latency_ms=0, error_rate=0.0, seed=3)
    with run_in_thread(config) as base_url, counting_aws_requests(airflow_task_label) as counter:
        dag_run = run_job({"url": f"{base_url}/payload"})

    assert str(dag_run.state) == "success", task_states(dag_run)
    assert load_job_progress("api_poller", dag_run.run_id)["SuccessfullyCompleted"] == PAGES
    counts = counter.by_operation()
    assert counts["s3.PutObject"] == 2 * PAGES  # counting works: every page was saved and processed
    by_task = json.dumps(counter.by_label(), indent=1, sort_keys=True)
    checkpoints = checkpoint_budgets(status_task_seconds(dag_run))
    assert over_budget(counts, PAGES, checkpoints) == {}, f"requests by task:\n{by_task}"


def test_the_budget_catches_one_more_request_per_page() -> None:
    measured = {"s3.PutObject": 2 * PAGES, "s3.GetObject": PAGES, "sqs.ReceiveMessage": 6}
    assert over_budget(measured, PAGES) == {}
    assert set(over_budget({**measured, "s3.HeadObject": PAGES}, PAGES)) == {"s3.HeadObject"}
    assert set(over_budget({**measured, "s3.GetObject": 2 * PAGES}, PAGES)) == {"s3.GetObject"}
    assert set(over_budget({**measured, "sqs.ReceiveMessage": 6 + PAGES}, PAGES)) == {"sqs.ReceiveMessage"}


def test_checkpoint_writes_may_follow_run_time_but_not_pages() -> None:
    budget = checkpoint_budgets([2.0, 10.0])  # a fetch task of 2 s, the consumer's 10 s
    assert budget["s3.PutObject[status checkpoint]"] == Budget(0, (12 + 52) * 2)
    checkpoints = {"s3.PutObject[status checkpoint]": 128}
    assert over_budget(checkpoints, PAGES, budget) == {}
    assert set(over_budget({"s3.PutObject[status checkpoint]": 129}, PAGES, budget)) == {
        "s3.PutObject[status checkpoint]"
    }
    assert set(over_budget(checkpoints, PAGES)) == {
        "s3.PutObject[status checkpoint]"
    }  # no run time: no budget
