"""Grouping failed pages by reason and counting pages over time (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime

from api_poller.core.status_document import JobStatus, records_summary
from api_poller.jobs_api.explain import bucket_seconds, failed_reasons, timeline

START = datetime(2026, 1, 1, tzinfo=UTC)
T0 = START.timestamp()


def status_of(statuses: dict) -> JobStatus:
    """The job's merged status when one task recorded ``statuses``."""
    return JobStatus.merge([records_summary(statuses)])


def failed(reason: str | None, at: float = T0) -> dict:
    return {"state": "FailedToComplete", "at": at, **({"reason": reason} if reason else {})}


def test_failed_pages_are_grouped_by_reason_most_pages_first_with_a_sample():
    statuses = {f"page-{n:06d}": failed("HTTP 500") for n in range(7)}
    statuses |= {"page-000100": failed("record 0 has no 'id'"), "page-000101": failed(None)}
    statuses["page-000200"] = {"state": "SuccessfullyCompleted", "at": T0, "reason": "ignored"}
    assert failed_reasons(status_of(statuses).failures) == [
        {"Reason": "HTTP 500", "Pages": 7, "Sample": [f"page-{n:06d}" for n in range(5)]},
        {"Reason": "(no reason recorded)", "Pages": 1, "Sample": ["page-000101"]},
        {"Reason": "record 0 has no 'id'", "Pages": 1, "Sample": ["page-000100"]},
    ]
    assert failed_reasons({}) == []


def test_the_bucket_size_gives_about_sixty_buckets_in_round_seconds():
    assert bucket_seconds(0) == 1
    assert bucket_seconds(59) == 1
    assert bucket_seconds(600) == 10
    assert bucket_seconds(3600) == 60
    assert bucket_seconds(10 * 86400 * 60) == 10 * 86400


def test_the_timeline_counts_completions_failures_and_retries_per_bucket():
    statuses = {
        "page-000000": {"state": "SuccessfullyCompleted", "at": T0 + 1, "attempts": 3},
        "page-000001": {"state": "SuccessfullyCompleted", "at": T0 + 2, "receives": 2},
        "page-000002": {"state": "SuccessfullyCompleted", "at": T0 + 61},
        "page-000003": failed("HTTP 500", at=T0 + 119),
        "page-000004": {"state": "Enqueued", "at": T0 + 30},
        "page-000005": {"state": "Started", "at": "not a time"},
    }
    chart = timeline(status_of(statuses).timeline_buckets, START, datetime.fromtimestamp(T0 + 120, tz=UTC))
    assert chart["BucketSeconds"] == 2 and chart["Start"] == START
    assert len(chart["Buckets"]) == 61
    counts = [(b["Completed"], b["Failed"], b["Retries"]) for b in chart["Buckets"]]
    assert counts[0] == (1, 0, 2) and counts[1] == (1, 0, 1)
    assert counts[30] == (1, 0, 0) and counts[59] == (0, 1, 0)
    assert sum(c[0] for c in counts) == 3 and sum(c[1] for c in counts) == 1
    assert chart["Buckets"][30]["At"] == datetime.fromtimestamp(T0 + 60, tz=UTC)


def test_a_job_without_records_or_start_has_an_empty_timeline():
    assert timeline({}, None, None) == {"Start": None, "BucketSeconds": None, "Buckets": []}
    chart = timeline({}, START, START)
    assert chart["BucketSeconds"] == 1 and len(chart["Buckets"]) == 1
