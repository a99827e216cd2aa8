"""An Airflow run's task instances as seconds after the trigger: steps and the scheduler's idle time."""

from __future__ import annotations

from typing import Any

from bench.harness.timeline import idle_seconds, step_spans, task_timeline

RUN = {"queued_at": "2026-11-28T06:00:00Z"}


def ti(task_id: str, map_index: int, start: str | None, end: str | None) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "map_index": map_index,
        "state": "success" if end else "running",
        "try_number": 1,
        "queued_when": "2026-11-28T06:00:00.500000Z",
        "start_date": start and f"2026-11-28T06:00:{start}Z",
        "end_date": end and f"2026-11-28T06:00:{end}Z",
    }


TIS = [
    ti("report", -1, "09.00", "10.50"),
    ti("plan", -1, "01.00", "02.00"),
    ti("fetch_pages", 1, "03.00", "08.00"),
    ti("fetch_pages", 0, "02.50", "07.25"),
    ti("process.consume_page_messages", -1, None, None),  # never started
]


def test_task_instances_become_rows_in_start_order_with_the_unstarted_last() -> None:
    rows = task_timeline(RUN, TIS)
    assert [row["task"] for row in rows] == [
        "plan",
        "fetch_pages[0]",
        "fetch_pages[1]",
        "report",
        "process.consume_page_messages",
    ]
    assert rows[1] == {
        "task": "fetch_pages[0]",
        "state": "success",
        "try": 1,
        "queued_s": 0.5,
        "start_s": 2.5,
        "end_s": 7.25,
    }
    assert (rows[-1]["start_s"], rows[-1]["end_s"]) == (None, None)


def test_a_mapped_step_spans_from_its_first_start_to_its_last_end() -> None:
    spans = step_spans(task_timeline(RUN, TIS))
    assert spans["fetch_pages"] == [2.5, 8.0]
    assert spans["plan"] == [1.0, 2.0]
    assert spans["process.consume_page_messages"] == [None, None]


def test_idle_time_is_the_runs_time_with_no_task_running() -> None:
    timeline = task_timeline(RUN, TIS)
    # Busy: 1-2, 2.5-8 (two overlapping fetches count once), 9-10.5 = 8 s of an 11 s run.
    assert idle_seconds(timeline, 11.0) == 3.0
    assert idle_seconds(timeline, None) is None  # the run never ended
