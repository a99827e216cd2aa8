"""A job's outcome and the alert that tells it: decided and written without Airflow."""

from __future__ import annotations

import pytest

from api_poller.pipeline.outcome import (
    COMPLETE,
    FAILED,
    INCOMPLETE,
    MAX_SUBJECT_CHARS,
    MISSING_OUTPUT,
    JobEnd,
    alert_message,
    alert_subject,
    decide_outcome,
    failed_pages_of,
    group_failed_pages,
)


@pytest.mark.parametrize(
    ("summary", "failed_steps", "outcome"),
    [
        ({"complete": True}, (), COMPLETE),
        ({"complete": False}, ("report",), INCOMPLETE),
        ({"complete": False}, (), INCOMPLETE),  # API_POLLER_ON_INCOMPLETE=warn: the run succeeded
        (None, ("plan", "fetch_pages", "report"), FAILED),  # no summary: the plan failed
        ({"complete": True}, ("publish",), FAILED),  # a step after the report failed
    ],
)
def test_the_outcome_follows_the_summary_and_the_failed_steps(summary, failed_steps, outcome) -> None:
    assert decide_outcome(summary, failed_steps) == outcome


def test_pages_failed_for_one_reason_are_grouped_whatever_their_query_or_page_id() -> None:
    failed = {
        "page-000002": "gave up after 6 attempts: HTTP 503 from https://api.example/items?offset=10&key=s3cret",
        "page-000005": "gave up after 6 attempts: HTTP 503 from https://api.example/items?offset=40&key=s3cret",
        "page-000007": "dead-lettered after 3 receives: page-000007: record 0 has no 'id'",
        "page-000009": "dead-lettered after 3 receives: page-000009: record 0 has no 'id'",
        "page-000011": "dead-lettered after 3 receives: page-000011: record 0 has no 'id'",
    }
    groups = group_failed_pages(failed)
    assert groups == [
        (
            "dead-lettered after 3 receives: <page>: record 0 has no 'id'",
            ["page-000007", "page-000009", "page-000011"],
        ),
        ("gave up after 6 attempts: HTTP 503 from https://api.example/items", ["page-000002", "page-000005"]),
    ]
    assert "s3cret" not in repr(groups)  # a query string never reaches an alert


def test_failed_pages_come_from_the_statuses_then_the_reconciliation_then_the_summary() -> None:
    latest = {
        "page-000001": {"state": "SuccessfullyCompleted"},
        "page-000002": {"state": "FailedToComplete", "reason": "dead-lettered"},
        "page-000003": {"state": "Enqueued"},
    }
    summary = {
        "reconciliation": {"pagesMissing": ["page-000002", "page-000003"]},
        "failedPages": {"page-000004": "HTTP 404"},
    }
    assert failed_pages_of(latest, summary) == {
        "page-000002": "dead-lettered",
        "page-000003": MISSING_OUTPUT,
        "page-000004": "HTTP 404",
    }


def test_an_alert_for_ten_thousand_failed_pages_stays_short() -> None:
    failed = {f"page-{page:06d}": f"reason number {page % 40}" for page in range(1, 10_001)}
    end = JobEnd(
        job_id="manual__2026-12-02T10:00:00+00:00",
        dag_id="api_poller__orders",
        source="orders",
        outcome=INCOMPLETE,
        summary={"complete": False, "recordsWritten": 5, "totalRecords": 1_000_000},
        failed_pages=failed,
        progress={"SuccessfullyCompleted": 0, "FailedToComplete": 10_000, "Total": 10_000},
        links={"Progress page": "https://airflow.example/api-poller/"},
    )
    message = alert_message(end)
    assert len(message) < 4000
    assert "Failed pages (10000), by reason:" in message
    assert "- 30 more reason(s), 7500 page(s)" in message
    assert "and 245 more" in message  # page ids cut at five per reason
    assert "Progress page: https://airflow.example/api-poller/" in message


def test_a_plan_that_failed_is_named_in_the_alert() -> None:
    end = JobEnd(
        job_id="j",
        dag_id="api_poller__orders",
        source="orders",
        outcome=FAILED,
        plan_error="source 'orders': cannot plan the job: orders.yaml: connection_id: missing",
        failed_tasks=("fetch_pages", "plan", "report"),
    )
    message = alert_message(end)
    assert "ended FAILED" in message
    assert "The plan failed: source 'orders': cannot plan the job" in message
    assert "Failed steps: fetch_pages, plan, report" in message


def test_the_subject_is_one_printable_line_within_snss_limit() -> None:
    end = JobEnd(job_id="scheduled__" + "x" * 200 + "\n\u00e9", dag_id="d", source="orders", outcome=FAILED)
    subject = alert_subject(end)
    assert len(subject) <= MAX_SUBJECT_CHARS
    assert subject.isprintable() and subject.isascii()
