"""Unit tests of api_poller.core.status_document: summaries merged into a job's status."""

from __future__ import annotations

from typing import Any

import pytest

from api_poller.core.lifecycle import PageState, StatusRecorder, merge_page_statuses, summarize
from api_poller.core.status_document import (
    JobStatus,
    TaskStatus,
    encode_chunk,
    read_chunk,
    read_summary,
    records_summary,
)

T0 = 1_800_000_000.0


def rec(state: PageState, at: float = T0, **details: Any) -> dict[str, Any]:
    return {"state": state.value, "at": at, **details}


def published_summary(records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What a task whose records are ``records`` publishes as its summary (through a recorder)."""
    out: list[Any] = []
    recorder = StatusRecorder(out.append, interval=0, floor=records)
    recorder.flush()
    return out[-1].summary


def merged(*tasks: dict[str, dict[str, Any]]) -> JobStatus:
    return JobStatus.merge(read_summary(published_summary(task)) for task in tasks)


def test_a_fetch_and_a_consumer_merge_to_the_most_advanced_state_of_each_page() -> None:
    fetch = {
        "page-000001": rec(PageState.ENQUEUED),
        "page-000002": rec(PageState.ENQUEUED),
        "page-000003": rec(PageState.PAYLOAD_SAVED),
        "page-000004": rec(PageState.STARTED),
        "page-000005": rec(PageState.FAILED_TO_COMPLETE, reason="HTTP 404"),
    }
    consumer = {
        "page-000001": rec(PageState.SUCCESSFULLY_COMPLETED),
        # processed before the fetch task published its Enqueued: still counted once, as done
        "page-000003": rec(PageState.SUCCESSFULLY_COMPLETED),
    }
    status = merged(fetch, consumer)
    assert status.progress(6) == {
        "Started": 1,
        "PayloadSaved": 0,
        "Enqueued": 1,
        "SuccessfullyCompleted": 2,
        "FailedToComplete": 1,
        "Total": 6,
    }
    assert status.failures == {"page-000005": "HTTP 404"}
    assert status.state_of(3) is PageState.SUCCESSFULLY_COMPLETED
    assert status.state_of(6) is None


def test_the_merge_agrees_with_merging_every_record() -> None:
    """The bitmaps say what merge_page_statuses over the full records says, for every page."""
    states = list(PageState)
    tasks = [
        {f"page-{n:06d}": rec(states[(n * (task + 3)) % 5], at=T0 + task) for n in range(task, 600, task + 1)}
        for task in range(4)
    ]
    status = merged(*tasks)
    records = merge_page_statuses(tasks)
    assert status.states() == {page: record["state"] for page, record in records.items()}
    assert status.progress(600) == summarize(records, 600)


def test_a_redriven_page_that_succeeded_elsewhere_is_no_longer_failed() -> None:
    consumer_before = {"page-000007": rec(PageState.FAILED_TO_COMPLETE, reason="dead-lettered")}
    consumer_after = {"page-000007": rec(PageState.SUCCESSFULLY_COMPLETED, at=T0 + 5)}
    status = merged(consumer_before, consumer_after)
    assert status.failures == {}
    assert status.count(PageState.SUCCESSFULLY_COMPLETED) == 1


def test_the_latest_failure_reason_wins() -> None:
    fetch = {"page-000002": rec(PageState.FAILED_TO_COMPLETE, at=T0, reason="early")}
    consumer = {"page-000002": rec(PageState.FAILED_TO_COMPLETE, at=T0 + 9, reason="late")}
    assert merged(consumer, fetch).failures == {"page-000002": "late"}


def test_the_timeline_counts_settled_pages_and_their_retries_per_second() -> None:
    fetch = {"page-000001": rec(PageState.FAILED_TO_COMPLETE, at=T0 + 1.5, attempts=6, reason="x")}
    consumer = {
        "page-000002": rec(PageState.SUCCESSFULLY_COMPLETED, at=T0 + 1.2, receives=2),
        "page-000003": rec(PageState.SUCCESSFULLY_COMPLETED, at=T0 + 3.0),
    }
    status = merged(fetch, consumer)
    assert status.timeline_seconds == 1
    assert status.timeline_buckets == {int(T0) + 1: [1, 1, 6], int(T0) + 3: [1, 0, 0]}


def test_a_long_task_keeps_a_coarser_timeline_of_bounded_size() -> None:
    records = {f"page-{n:06d}": rec(PageState.SUCCESSFULLY_COMPLETED, at=T0 + n * 10) for n in range(3_000)}
    summary = published_summary(records)
    assert len(summary["timeline"]["buckets"]) <= 240
    status = merged(records)
    assert sum(counts[0] for counts in status.timeline_buckets.values()) == 3_000


def test_a_summary_of_the_earlier_format_is_read_as_its_records() -> None:
    legacy = {
        "page-000001": rec(PageState.ENQUEUED),
        "page-000002": rec(PageState.FAILED_TO_COMPLETE, reason="r"),
    }
    task = read_summary(legacy)
    assert task.records == legacy
    assert task.page_ids() == ["page-000001", "page-000002"]
    assert JobStatus.merge([task]).failures == {"page-000002": "r"}


def test_records_that_say_nothing_are_skipped_not_fatal() -> None:
    task = records_summary(
        {"page-000001": {"no": "state"}, "other": rec(PageState.STARTED), "page-000002": "x"}
    )
    assert task.page_ids() == [] and task.records == {}


@pytest.mark.parametrize(
    "document",
    [
        [1, 2],
        "text",
        {"v": 2, "pages": {"Started": "%%%"}},
        {"v": 2, "pages": {"Bogus": ""}},
        {"v": 2, "chunks": 3},
    ],
)
def test_a_malformed_summary_is_refused(document: object) -> None:
    with pytest.raises(ValueError):
        read_summary(document)


def test_nothing_published_is_an_empty_job() -> None:
    status = JobStatus.merge([])
    assert status.progress(0) == dict.fromkeys([*PageState, "Total"], 0) | {"Total": 0}
    assert status.recorded == 0 and status.timeline_buckets == {} and status.failures == {}


def test_a_task_status_lists_its_pages_in_order() -> None:
    assert TaskStatus(pages={PageState.STARTED: 0b1010, PageState.ENQUEUED: 0b1}).page_ids() == [
        "page-000000",
        "page-000001",
        "page-000003",
    ]


def test_a_chunk_is_published_as_json_text_and_read_back_in_either_format() -> None:
    records = {"page-000003": rec(PageState.FAILED_TO_COMPLETE, reason="HTTP 500 «é»", attempts=6)}
    text = encode_chunk(records)
    assert isinstance(text, str) and read_chunk(text) == records
    assert read_chunk(records) == records  # the object an earlier version published
    for malformed in ("{not json", '{"page-000003": {"at": 1}}', "[1]", None, 7):
        assert read_chunk(malformed) is None
