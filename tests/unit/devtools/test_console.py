"""The local run's console: the numbers and text it shows from a job's progress and page statuses."""

from __future__ import annotations

import io
import json

from api_poller_dev.console import (
    Failure,
    JsonReporter,
    LiveReporter,
    PlainReporter,
    Snapshot,
    Summary,
    count_retries,
    failures_by_reason,
    format_duration,
    progress_line,
    reporter_for,
    summary_lines,
)

COUNTS = {
    "Started": 1,
    "PayloadSaved": 2,
    "Enqueued": 3,
    "SuccessfullyCompleted": 36,
    "FailedToComplete": 4,
    "Total": 100,
}


def summary(**changes: object) -> Summary:
    fields: dict[str, object] = {
        "dag_id": "api_poller",
        "run_id": "manual__1",
        "state": "success",
        "complete": True,
        "counts": {**COUNTS, "SuccessfullyCompleted": 100, "FailedToComplete": 0},
        "records": 10_000,
        "files": 100,
        "s3_location": "s3://processed/jobs/manual__1/records/",
        "local_copy": "/tmp/out",
        "elapsed": 75.0,
        "log_path": "/tmp/state/logs/local-sync.log",
    }
    return Summary(**{**fields, **changes})  # type: ignore[arg-type]


def test_rate_and_time_left_come_from_the_pages_finished_so_far():
    snapshot = Snapshot(COUNTS, retries=0, elapsed=20.0)
    assert snapshot.finished == 40  # completed and failed
    assert snapshot.pages_per_second == 2.0
    assert snapshot.seconds_left == 30.0  # 60 pages left at 2 pages/s


def test_time_left_is_unknown_before_any_page_finished_or_while_a_walk_goes_on():
    assert Snapshot({"Total": 10}, retries=0, elapsed=5.0).seconds_left is None
    walking = {**COUNTS, "TotalKnown": False}
    assert Snapshot(walking, retries=0, elapsed=5.0).seconds_left is None
    assert "100+ (walking)" in progress_line(Snapshot(walking, retries=0, elapsed=5.0))


def test_a_retry_is_a_page_fetched_more_than_once_or_carrying_an_error():
    statuses = {
        "p1": {"state": "SuccessfullyCompleted", "attempts": 1},
        "p2": {"state": "SuccessfullyCompleted", "attempts": 3},
        "p3": {"state": "Started", "attempts": 1, "error": "HTTP 503"},
        "p4": {"state": "Enqueued"},
    }
    assert count_retries(statuses) == 2


def test_failures_are_grouped_by_reason_most_frequent_first():
    statuses = {
        "p1": {"state": "FailedToComplete", "reason": "dead-lettered: KeyError 'id'"},
        "p2": {"state": "FailedToComplete", "reason": "HTTP 404"},
        "p3": {"state": "FailedToComplete", "reason": "dead-lettered: KeyError 'id'"},
        "p4": {"state": "SuccessfullyCompleted"},
        "p5": {"state": "FailedToComplete"},
    }
    assert failures_by_reason(statuses) == [
        Failure("dead-lettered: KeyError 'id'", ["p1", "p3"]),
        Failure("HTTP 404", ["p2"]),
        Failure("no reason recorded", ["p5"]),
    ]


def test_durations_read_as_a_person_would_say_them():
    assert format_duration(None) == "unknown"
    assert format_duration(9.6) == "10s"
    assert format_duration(75) == "1m15s"
    assert format_duration(3725) == "1h02m05s"


def test_the_progress_line_shows_states_rate_times_retries_and_failures():
    line = progress_line(Snapshot(COUNTS, retries=7, elapsed=20.0))
    assert line.startswith("progress: 40/100 pages done")
    assert "Started=1 PayloadSaved=2 Enqueued=3 SuccessfullyCompleted=36 FailedToComplete=4" in line
    assert "2.0 pages/s" in line and "elapsed 20s" in line and "left 30s" in line
    assert line.endswith("retries 7 | failures 4")


def test_the_summary_says_what_was_written_where_and_how_to_read_the_logs():
    lines = summary_lines(summary())
    assert lines[0] == "job manual__1 (api_poller): complete in 1m15s"
    assert "written: 10000 records from 100 of 100 pages (100 files)" in lines
    assert "output: s3://processed/jobs/manual__1/records/ (local copy: /tmp/out)" in lines
    assert lines[-1] == "logs: less /tmp/state/logs/local-sync.log"


def test_an_incomplete_job_summary_lists_failures_by_reason():
    pages = [f"page-{n}" for n in range(7)]
    lines = summary_lines(
        summary(state="failed", complete=False, failures=[Failure("HTTP 404", pages), Failure("bad", ["x"])])
    )
    assert lines[0].startswith("job manual__1 (api_poller): NOT complete (run failed)")
    assert "failed pages: 8" in lines
    assert "  7 x HTTP 404 (pages page-0, page-1, page-2, page-3, page-4, ...)" in lines
    assert "  1 x bad (pages x)" in lines


def test_json_lines_are_one_object_each_ending_with_the_summary():
    out = io.StringIO()
    reporter = JsonReporter(out)
    reporter.info("starting", log_path="/tmp/log")
    reporter.update(Snapshot(COUNTS, retries=2, elapsed=20.0))
    reporter.finish(summary())
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [event["event"] for event in events] == ["info", "progress", "summary"]
    assert events[1]["pages"] == COUNTS and events[1]["seconds_left"] == 30.0 and events[1]["retries"] == 2
    assert events[2]["complete"] is True and events[2]["records"] == 10_000
    assert events[2]["pages_written"] == 100


def test_a_file_gets_plain_lines_and_a_terminal_the_live_display():
    assert isinstance(reporter_for(io.StringIO(), as_json=False), PlainReporter)
    assert isinstance(reporter_for(io.StringIO(), as_json=True), JsonReporter)

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert isinstance(reporter_for(Terminal(), as_json=False), LiveReporter)
