"""Why a job failed (Error, FailedReasons), its page table a slice at a time, and its timeline."""

from __future__ import annotations

from typing import Any

import pytest

from api_poller import names
from tests.unit.jobs_api.conftest import JobsApi
from tests.unit.jobs_api.test_routes import job_path, start

STATES = "Started, PayloadSaved, Enqueued, SuccessfullyCompleted, FailedToComplete, Pending"


def record(job_id: str, xcoms: list[tuple[str, str, Any]], dag_id: str = names.POLLER_DAG_ID) -> None:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        for task_id, key, value in xcoms:
            XComModel.set(key, value, dag_id=dag_id, task_id=task_id, run_id=job_id, session=session)


def planned_job(api: JobsApi, pages: int, statuses: dict[str, dict]) -> str:
    job_id = start(api)
    plan = [{"batch": [{"page": n, "start_at": n * 10, "count": 10} for n in range(pages)]}]
    record(
        job_id,
        [
            (names.PLAN_TASK, names.RETURN_VALUE_KEY, plan),
            (names.PLAN_TASK, names.TOTAL_PAGES_KEY, pages),
            (names.CONSUME_TASK_ID, names.STATUS_KEY, statuses),
        ],
    )
    return job_id


def failed(reason: str, at: float = 100.0) -> dict:
    return {"state": "FailedToComplete", "at": at, "reason": reason, "receives": 3}


# -- why a job failed -------------------------------------------------------------------------------


def test_a_failed_plan_is_explained_by_its_error(jobs_api: JobsApi):
    job_id = start(jobs_api)
    message = "cannot plan the job: connection to 127.0.0.1:9 refused"
    record(job_id, [(names.PLAN_TASK, names.PLAN_ERROR_KEY, message)])
    job = jobs_api.client.get(job_path(job_id)).json()
    assert (job["Error"], job["FailedReasons"], job["Total"]) == (message, [], 0)


def test_failed_pages_are_grouped_by_reason(jobs_api: JobsApi):
    statuses = {f"page-{n:06d}": failed("HTTP 500 from the partner") for n in range(6)}
    statuses["page-000006"] = failed("record 0 has no 'id'")
    statuses["page-000007"] = {"state": "SuccessfullyCompleted", "at": 100.0}
    job = jobs_api.client.get(job_path(planned_job(jobs_api, 8, statuses))).json()
    assert job["Error"] is None
    assert job["FailedReasons"] == [
        {"Reason": "HTTP 500 from the partner", "Pages": 6, "Sample": [f"page-{n:06d}" for n in range(5)]},
        {"Reason": "record 0 has no 'id'", "Pages": 1, "Sample": ["page-000006"]},
    ]
    assert job["FailedToComplete"] == 7


def test_the_job_list_does_not_carry_the_explanations(jobs_api: JobsApi):
    planned_job(jobs_api, 1, {"page-000000": failed("boom")})
    [job, *_] = jobs_api.client.get("/jobs?limit=1").json()["Jobs"]
    assert "FailedReasons" not in job and "Error" not in job


# -- the page table ---------------------------------------------------------------------------------


def test_the_page_table_is_sliced_and_filtered_by_state(jobs_api: JobsApi):
    statuses = {f"page-{n:06d}": failed("HTTP 500") for n in range(0, 250, 2)}  # 125 failed, 125 pending
    job_id = planned_job(jobs_api, 250, statuses)

    default = jobs_api.client.get(job_path(job_id, "/tasks")).json()
    assert (default["Total"], default["Matching"], default["Offset"], default["Limit"]) == (250, 250, 0, 100)
    assert [page["PageId"] for page in default["Pages"]] == [f"page-{n:06d}" for n in range(100)]

    failures = jobs_api.client.get(job_path(job_id, "/tasks?state=FailedToComplete&offset=120&limit=10"))
    body = failures.json()
    assert (body["Total"], body["Matching"], body["Offset"], body["Limit"]) == (250, 125, 120, 10)
    assert [page["PageId"] for page in body["Pages"]] == [f"page-{n:06d}" for n in range(240, 250, 2)]
    assert {page["Reason"] for page in body["Pages"]} == {"HTTP 500"}

    pending = jobs_api.client.get(job_path(job_id, "/tasks?state=Pending&limit=1000")).json()
    assert pending["Matching"] == 125 and len(pending["Pages"]) == 125
    assert all(page["State"] == "Pending" for page in pending["Pages"])

    beyond = jobs_api.client.get(job_path(job_id, "/tasks?offset=1000000")).json()
    assert (beyond["Matching"], beyond["Pages"]) == (250, [])


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("state=Done", f"Unknown page state 'Done': use one of {STATES}"),
        ("state=%00", f"Unknown page state '\\x00': use one of {STATES}"),
        ("state=failedtocomplete", "Unknown page state 'failedtocomplete'"),
        ("state=" + "x" * 100, "at most 64 characters"),
        ("limit=-1", "greater than or equal to 1"),
        ("limit=0", "greater than or equal to 1"),
        ("limit=1001", "less than or equal to 1000"),
        ("offset=-5", "greater than or equal to 0"),
        ("offset=" + "9" * 40, "less than or equal to 1000000000"),
        ("offset=" + "9" * 5000, "exceeded maximum size"),
        ("limit=ten", "valid integer"),
        ("offset=%00", "valid integer"),
    ],
    ids=[
        "unknown-state", "nul-state", "wrong-case", "long-state", "negative-limit", "zero-limit",
        "limit-too-high", "negative-offset", "huge-offset", "absurd-offset", "word-limit", "nul-offset",
    ],
)  # fmt: skip
def test_a_bad_page_table_query_is_422_with_a_clear_message(jobs_api: JobsApi, query: str, message: str):
    job_id = planned_job(jobs_api, 1, {})
    answer = jobs_api.client.get(job_path(job_id, f"/tasks?{query}"))
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert message in (detail if isinstance(detail, str) else " ".join(e["msg"] for e in detail)), detail
    assert len(answer.content) < 2000  # a huge value is not sent back whole


def test_an_unknown_job_is_404_whatever_the_query(jobs_api: JobsApi):
    answer = jobs_api.client.get(job_path("no-such-job", "/tasks?state=Pending&offset=5&limit=5"))
    assert answer.status_code == 404 and "not found" in answer.json()["detail"]


# -- the timeline -----------------------------------------------------------------------------------


def test_the_timeline_counts_pages_completed_per_bucket(jobs_api: JobsApi):
    from datetime import UTC, datetime

    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import update

    begin = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    t0 = begin.timestamp()
    statuses = {
        "page-000000": {"state": "SuccessfullyCompleted", "at": t0 + 5, "attempts": 2},
        "page-000001": {"state": "SuccessfullyCompleted", "at": t0 + 7},
        "page-000002": {"state": "SuccessfullyCompleted", "at": t0 + 300},
        "page-000003": failed("HTTP 500", at=t0 + 590),
    }
    job_id = planned_job(jobs_api, 5, statuses)
    with create_session() as session:  # the run as it ran: ten minutes
        session.execute(
            update(DagRun)
            .where(DagRun.run_id == job_id)
            .values(start_date=begin, end_date=datetime.fromtimestamp(t0 + 600, tz=UTC), state="failed")
        )
    chart = jobs_api.client.get(job_path(job_id, "/timeline")).json()
    assert (chart["JobId"], chart["State"], chart["BucketSeconds"]) == (job_id, "failed", 10)
    assert chart["Start"].startswith("2026-03-01T12:00:00")
    buckets = chart["Buckets"]
    assert len(buckets) == 61
    assert (buckets[0]["Completed"], buckets[0]["Retries"]) == (2, 1)
    assert buckets[30]["Completed"] == 1 and buckets[59]["Failed"] == 1
    assert sum(bucket["Completed"] for bucket in buckets) == 3
    assert sum(bucket["Retries"] for bucket in buckets) == 1 + 2  # the failed page's 3 receives


def test_a_job_that_has_not_started_has_an_empty_timeline(jobs_api: JobsApi):
    chart = jobs_api.client.get(job_path(start(jobs_api), "/timeline")).json()
    assert (chart["Start"], chart["BucketSeconds"], chart["Buckets"]) == (None, None, [])
