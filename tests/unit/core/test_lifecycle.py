"""Unit tests of api_poller.core.lifecycle (lifecycle, merge, progress, recorder) and pipeline.report."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from api_poller.core.lifecycle import (
    PROGRESS_FIELDS,
    PageState,
    Publication,
    StatusRecorder,
    merge_page_statuses,
    summarize,
)
from api_poller.core.status_document import CHUNK_PAGES, read_summary
from api_poller.pipeline.report import job_summary

SEED_PROGRESS_KEYS = [
    "Started",
    "PayloadSaved",
    "Enqueued",
    "SuccessfullyCompleted",
    "FailedToComplete",
    "Total",
]
LIFECYCLE = [PageState.STARTED, PageState.PAYLOAD_SAVED, PageState.ENQUEUED, PageState.SUCCESSFULLY_COMPLETED]


def rec(state: PageState, at: float, **details: Any) -> dict[str, Any]:
    return {"state": state.value, "at": at, **details}


class Published(list):
    """A recorder's publications, seen as a reader of its XComs sees them after each one: every
    page's record (each publication replaces the chunks it carries)."""

    def __init__(self) -> None:
        super().__init__()
        self.publications: list[Publication] = []
        self._chunks: dict[int, dict[str, Any]] = {}

    def __call__(self, publication: Publication) -> None:
        self.publications.append(publication)
        self._chunks.update(publication.chunks)
        self.append({page: record for chunk in self._chunks.values() for page, record in chunk.items()})


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- PageState --------------------------------------------------------------------------------


def test_states_use_the_seed_names_in_lifecycle_order() -> None:
    assert SEED_PROGRESS_KEYS[:-1] == PROGRESS_FIELDS
    assert [state.rank for state in LIFECYCLE] == [0, 1, 2, 3]


@pytest.mark.parametrize("state", list(PageState))
def test_only_outcomes_are_final(state: PageState) -> None:
    assert state.is_final == (state in (PageState.SUCCESSFULLY_COMPLETED, PageState.FAILED_TO_COMPLETE))


# --- merge_page_statuses ----------------------------------------------------------------------


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_merge_most_advanced_state_wins_whatever_the_order(order: tuple[int, ...]) -> None:
    # One XCom per task, each knowing a different stage of the page; timestamps deliberately
    # disagree with the lifecycle so that only the state's rank can decide.
    per_task = [{"page-000000": rec(state, at=10.0 - rank)} for rank, state in enumerate(LIFECYCLE)]
    merged = merge_page_statuses([per_task[i] for i in order])
    assert merged["page-000000"]["state"] == "SuccessfullyCompleted"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (PageState.FAILED_TO_COMPLETE, PageState.SUCCESSFULLY_COMPLETED),
        (PageState.SUCCESSFULLY_COMPLETED, PageState.FAILED_TO_COMPLETE),
    ],
    ids=["redriven-success", "later-failure"],
)
@pytest.mark.parametrize("reverse", [False, True], ids=["in-order", "reversed"])
def test_merge_success_wins_over_failure_whenever_it_came(
    first: PageState, second: PageState, reverse: bool
) -> None:
    # A redriven page succeeds after failing; nothing fails a page that succeeded (exactly once).
    published = [{"page-000001": rec(first, at=1.0)}, {"page-000001": rec(second, at=2.0)}]
    merged = merge_page_statuses(published[::-1] if reverse else published)
    assert merged["page-000001"]["state"] == "SuccessfullyCompleted"


def test_merge_later_failure_wins_over_an_earlier_one() -> None:
    published = [
        {"page-000001": rec(PageState.FAILED_TO_COMPLETE, at=2.0, reason="late")},
        {"page-000001": rec(PageState.FAILED_TO_COMPLETE, at=1.0, reason="early")},
    ]
    assert merge_page_statuses(published)["page-000001"]["reason"] == "late"


def test_merge_final_state_beats_a_later_non_final_one() -> None:
    published = [
        {"page-000001": rec(PageState.FAILED_TO_COMPLETE, at=1.0, reason="boom")},
        {"page-000001": rec(PageState.STARTED, at=99.0)},
    ]
    assert merge_page_statuses(published)["page-000001"]["state"] == "FailedToComplete"


def test_merge_ignores_none_entries() -> None:
    published = [None, {"page-000000": rec(PageState.STARTED, 1.0)}, None]
    assert merge_page_statuses(published) == {"page-000000": rec(PageState.STARTED, 1.0)}


def test_merge_of_nothing_is_empty() -> None:
    assert merge_page_statuses([]) == {}
    assert merge_page_statuses([None, {}]) == {}


def test_merge_keeps_pages_from_every_task() -> None:
    published = [
        {"page-000000": rec(PageState.PAYLOAD_SAVED, 1.0), "page-000001": rec(PageState.STARTED, 1.0)},
        {"page-000002": rec(PageState.ENQUEUED, 2.0)},
    ]
    assert sorted(merge_page_statuses(published)) == ["page-000000", "page-000001", "page-000002"]


def test_merge_keeps_the_winning_record_and_fills_in_details_from_earlier_states() -> None:
    published = [
        {"page-000003": rec(PageState.PAYLOAD_SAVED, 1.0, attempts=2, error="HTTP 500")},
        {"page-000003": rec(PageState.SUCCESSFULLY_COMPLETED, 2.0, records=100, error=None)},
    ]
    assert merge_page_statuses(published)["page-000003"] == rec(
        PageState.SUCCESSFULLY_COMPLETED, 2.0, records=100, attempts=2, error=None
    )


def test_merge_fills_in_details_whatever_the_order() -> None:
    published = [
        {"page-000003": rec(PageState.SUCCESSFULLY_COMPLETED, 2.0, records=100)},
        {"page-000003": rec(PageState.PAYLOAD_SAVED, 1.0, attempts=2, raw_key="k")},
    ]
    merged = merge_page_statuses(published)["page-000003"]
    assert merged["state"] == "SuccessfullyCompleted" and merged["attempts"] == 2 and merged["raw_key"] == "k"


def test_merge_does_not_alias_published_records() -> None:
    published = {"page-000000": rec(PageState.STARTED, 1.0)}
    merged = merge_page_statuses([published])
    merged["page-000000"]["state"] = "Mutated"
    assert published["page-000000"]["state"] == "Started"


# --- summarize --------------------------------------------------------------------------------


def test_summarize_has_all_keys_in_seed_order_even_when_empty() -> None:
    progress = summarize({}, total=0)
    assert list(progress) == SEED_PROGRESS_KEYS
    assert progress == dict.fromkeys(SEED_PROGRESS_KEYS, 0)


def test_summarize_counts_each_page_once_in_its_latest_state() -> None:
    published = [
        {"page-000000": rec(PageState.STARTED, 1.0), "page-000001": rec(PageState.STARTED, 1.0)},
        {"page-000000": rec(PageState.PAYLOAD_SAVED, 2.0), "page-000002": rec(PageState.STARTED, 2.0)},
        {"page-000000": rec(PageState.SUCCESSFULLY_COMPLETED, 3.0)},
        {"page-000001": rec(PageState.FAILED_TO_COMPLETE, 3.0)},
    ]
    progress = summarize(merge_page_statuses(published), total=5)
    assert list(progress) == SEED_PROGRESS_KEYS
    assert progress == {
        "Started": 1,
        "PayloadSaved": 0,
        "Enqueued": 0,
        "SuccessfullyCompleted": 1,
        "FailedToComplete": 1,
        "Total": 5,
    }


@pytest.mark.parametrize("total", [0, 3, 10])
def test_summarize_total_is_the_planned_total_not_the_seen_pages(total: int) -> None:
    latest = {f"page-{i:06d}": rec(PageState.ENQUEUED, 1.0) for i in range(3)}
    assert summarize(latest, total)["Total"] == total


# --- StatusRecorder ---------------------------------------------------------------------------


def make_recorder(interval: float = 1.0) -> tuple[StatusRecorder, FakeClock, Published]:
    clock = FakeClock()
    published = Published()
    return StatusRecorder(published, interval=interval, clock=clock), clock, published


def test_recorder_publishes_first_mark_at_once() -> None:
    recorder, clock, published = make_recorder()
    recorder.mark("page-000000", PageState.STARTED)
    assert published == [{"page-000000": {"state": "Started", "at": clock.now}}]


def test_recorder_throttles_marks_within_interval() -> None:
    recorder, clock, published = make_recorder(interval=1.0)
    recorder.mark("page-000000", PageState.STARTED)
    for step in range(9):
        clock.now += 0.1
        recorder.mark(f"page-{step + 1:06d}", PageState.STARTED)
    assert len(published) == 1  # 0.9 s after the first publish


def test_recorder_publishes_again_once_interval_elapsed() -> None:
    recorder, clock, published = make_recorder(interval=1.0)
    recorder.mark("page-000000", PageState.STARTED)
    clock.now += 0.5
    recorder.mark("page-000001", PageState.STARTED)
    clock.now += 0.5
    recorder.mark("page-000002", PageState.STARTED)
    assert len(published) == 2
    assert sorted(published[-1]) == ["page-000000", "page-000001", "page-000002"]


def test_recorder_publish_rate_follows_interval_over_time() -> None:
    recorder, clock, published = make_recorder(interval=2.0)
    for step in range(100):  # one mark every 0.1 s for 10 s
        recorder.mark(f"page-{step:06d}", PageState.STARTED)
        clock.now += 0.1
    assert len(published) == 5  # at 0, 2, 4, 6 and 8 s


def test_recorder_flush_forces_pending_changes() -> None:
    recorder, clock, published = make_recorder(interval=60.0)
    recorder.mark("page-000000", PageState.STARTED)
    clock.now += 0.01
    recorder.mark("page-000000", PageState.PAYLOAD_SAVED)
    assert len(published) == 1
    recorder.flush()
    assert len(published) == 2
    assert published[-1]["page-000000"]["state"] == "PayloadSaved"


def test_recorder_flush_without_changes_publishes_nothing() -> None:
    recorder, _, published = make_recorder()
    recorder.flush()
    assert published == []
    recorder.mark("page-000000", PageState.STARTED)
    recorder.flush()
    recorder.flush()
    assert len(published) == 1


def test_recorder_merges_details_across_marks() -> None:
    recorder, clock, _ = make_recorder()
    recorder.mark("page-000000", PageState.STARTED, attempts=2, error="HTTP 500")
    clock.now += 5
    recorder.mark("page-000000", PageState.PAYLOAD_SAVED, attempts=3, raw_key="jobs/x/raw/page-000000.json")
    assert recorder.records["page-000000"] == {
        "state": "PayloadSaved",
        "at": clock.now,
        "attempts": 3,
        "error": "HTTP 500",
        "raw_key": "jobs/x/raw/page-000000.json",
    }


def test_recorder_none_details_do_not_erase_earlier_ones() -> None:
    recorder, _, _ = make_recorder()
    recorder.mark("page-000000", PageState.STARTED, attempts=2)
    recorder.mark("page-000000", PageState.PAYLOAD_SAVED, attempts=None)
    assert recorder.records["page-000000"]["attempts"] == 2


def test_recorder_state_of_reports_latest_state() -> None:
    recorder, _, _ = make_recorder()
    assert recorder.state_of("page-000000") is None
    recorder.mark("page-000000", PageState.STARTED)
    recorder.mark("page-000000", PageState.ENQUEUED)
    assert recorder.state_of("page-000000") is PageState.ENQUEUED


def test_recorder_published_snapshots_are_not_changed_by_later_marks() -> None:
    recorder, clock, published = make_recorder(interval=0.0)
    recorder.mark("page-000000", PageState.STARTED)
    clock.now += 1
    recorder.mark("page-000000", PageState.PAYLOAD_SAVED)
    recorder.mark("page-000001", PageState.STARTED)
    assert published[0] == {"page-000000": {"state": "Started", "at": 1000.0}}


# --- job_summary ------------------------------------------------------------------------------


def summary(total_pages: int, *published: dict[str, Any] | None) -> dict[str, Any]:
    return job_summary(
        job_id="manual__2026-11-28T01:00:00+00:00",
        total_pages=total_pages,
        total_records=total_pages * 100,
        processed_bucket="processed",
        statuses=merge_page_statuses(published),
    )


def done(records: int = 100, at: float = 5.0) -> dict[str, Any]:
    return rec(PageState.SUCCESSFULLY_COMPLETED, at, records=records)


def test_job_summary_complete_when_every_page_succeeded() -> None:
    result = summary(2, {"page-000000": done()}, None, {"page-000001": done(records=50)})
    assert result["complete"] is True
    assert result["failedPages"] == {}
    assert result["recordsWritten"] == 150
    assert result["progress"]["SuccessfullyCompleted"] == 2 and result["progress"]["Total"] == 2


def test_job_summary_incomplete_when_a_page_never_finished() -> None:
    result = summary(
        3, {"page-000000": done(), "page-000001": done(), "page-000002": rec(PageState.ENQUEUED, 1)}
    )
    assert result["complete"] is False
    assert result["failedPages"] == {}


def test_job_summary_incomplete_when_a_page_is_missing() -> None:
    assert summary(3, {"page-000000": done(), "page-000001": done()})["complete"] is False


def test_job_summary_lists_failed_pages_with_reasons() -> None:
    result = summary(
        3,
        {
            "page-000002": rec(PageState.FAILED_TO_COMPLETE, 4.0, reason="gave up after 6 attempts"),
            "page-000000": done(),
            "page-000001": rec(PageState.FAILED_TO_COMPLETE, 4.0),
        },
    )
    assert result["complete"] is False
    assert result["failedPages"] == {"page-000001": "unknown", "page-000002": "gave up after 6 attempts"}
    assert list(result["failedPages"]) == ["page-000001", "page-000002"]
    assert result["progress"]["FailedToComplete"] == 2


def test_job_summary_redriven_page_counts_as_success() -> None:
    result = summary(
        1,
        {"page-000000": rec(PageState.FAILED_TO_COMPLETE, 1.0, reason="poison")},
        {"page-000000": done(records=100, at=2.0)},
    )
    assert result["complete"] is True and result["failedPages"] == {}


def test_job_summary_records_written_counts_only_completed_pages() -> None:
    result = summary(
        3,
        {
            "page-000000": done(records=100),
            "page-000001": rec(PageState.PAYLOAD_SAVED, 1.0, records=100),
            "page-000002": rec(PageState.FAILED_TO_COMPLETE, 1.0, records=40, reason="x"),
        },
    )
    assert result["recordsWritten"] == 100


def test_job_summary_identifies_job_and_output() -> None:
    result = summary(0)
    assert result["jobId"] == "manual__2026-11-28T01:00:00+00:00"
    assert result["totalRecords"] == 0
    assert result["processedLocation"] == "s3://processed/jobs/manual__2026-11-28T01_00_00_00_00/records/"
    assert list(result["progress"]) == SEED_PROGRESS_KEYS


def test_a_publication_carries_only_the_chunks_that_changed_and_a_small_summary() -> None:
    """10,000 pages recorded: a later change republishes one chunk of records, not the task's."""
    recorder, clock, published = make_recorder(interval=1.0)
    for page in range(10_000):
        recorder.mark(f"page-{page:06d}", PageState.ENQUEUED)
    recorder.flush()
    clock.now += 2.0
    recorder.mark("page-004321", PageState.SUCCESSFULLY_COMPLETED, records=100)
    last = published.publications[-1]
    assert list(last.chunks) == [4321 // CHUNK_PAGES]
    assert len(last.chunks[4321 // CHUNK_PAGES]) == CHUNK_PAGES
    assert len(json.dumps(last.summary)) < 500  # the summary of 10,000 pages
    summary = read_summary(last.summary)
    assert summary.pages[PageState.SUCCESSFULLY_COMPLETED] == 1 << 4321
    assert summary.pages[PageState.ENQUEUED].bit_count() == 9_999
    assert published[-1]["page-004321"]["records"] == 100


def test_a_page_that_is_not_a_page_id_is_refused_before_anything_is_recorded() -> None:
    recorder, _, published = make_recorder()
    with pytest.raises(ValueError, match="not a page id"):
        recorder.mark("page-1x", PageState.STARTED)
    assert recorder.records == {} and published == []


# --- StatusRecorder over an earlier try's checkpoint (the floor) ------------------------------


def floored_recorder(floor: dict[str, Any]) -> tuple[StatusRecorder, FakeClock, Published, Published]:
    clock = FakeClock(now=2000.0)
    published, checkpoints = Published(), Published()
    recorder = StatusRecorder(published, interval=1.0, clock=clock, floor=floor, checkpoint=checkpoints)
    return recorder, clock, published, checkpoints


def test_recorder_republishes_its_floor_at_the_first_flush() -> None:
    floor = {"page-000000": rec(PageState.ENQUEUED, 1000.0, message_id="m-1")}
    recorder, _, published, checkpoints = floored_recorder(floor)
    recorder.flush()
    assert published == checkpoints == [floor]
    assert recorder.records == {}  # the try's own work only


def test_a_page_redone_by_a_new_try_never_falls_below_its_floor() -> None:
    floor = {
        "page-000000": rec(PageState.ENQUEUED, 1000.0, message_id="m-1"),
        "page-000001": rec(PageState.PAYLOAD_SAVED, 1000.0),
    }
    recorder, clock, published, _ = floored_recorder(floor)
    recorder.mark("page-000000", PageState.STARTED, attempts=1)
    recorder.mark("page-000001", PageState.STARTED)
    assert published[-1]["page-000000"]["state"] == "Enqueued"
    assert published[-1]["page-000001"]["state"] == "PayloadSaved"
    clock.now += 5
    recorder.mark("page-000001", PageState.ENQUEUED, message_id="m-2")  # moves on
    recorder.mark("page-000002", PageState.STARTED)  # a page the earlier try never reached
    recorder.flush()
    assert published[-1]["page-000001"]["state"] == "Enqueued"
    assert published[-1]["page-000001"]["message_id"] == "m-2"
    assert published[-1]["page-000002"]["state"] == "Started"
    assert recorder.state_of("page-000000") is PageState.STARTED  # the try's logic is its own


def test_a_failed_page_may_move_on_to_success_in_a_rerun() -> None:
    floor = {"page-000000": rec(PageState.FAILED_TO_COMPLETE, 1000.0, reason="dead-lettered")}
    recorder, clock, published, _ = floored_recorder(floor)
    recorder.mark("page-000000", PageState.STARTED)
    assert published[-1]["page-000000"]["state"] == "FailedToComplete"  # stays there meanwhile
    clock.now += 5
    recorder.mark("page-000000", PageState.SUCCESSFULLY_COMPLETED, records=100)
    recorder.flush()
    assert published[-1]["page-000000"]["state"] == "SuccessfullyCompleted"


def test_every_publication_is_checkpointed_and_nothing_more() -> None:
    recorder, clock, published, checkpoints = floored_recorder({})
    for step in range(10):  # ten marks within one interval: one publication, one checkpoint
        recorder.mark(f"page-{step:06d}", PageState.STARTED)
        clock.now += 0.05
    recorder.flush()
    recorder.flush()  # nothing changed
    assert len(published) == len(checkpoints) == 2
    assert checkpoints.publications == published.publications
