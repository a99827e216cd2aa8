"""The purge cutoff never splits a run: a job's status goes all at once, or stays."""

from __future__ import annotations

from datetime import datetime

import pytest

from api_poller.operations.retention.status_purge import RunSpan, purge_cutoff
from tests.unit.operations.retention.seeding import DAY, HOUR, T0


def span(run_id: str, first: datetime, end: datetime | None = None) -> RunSpan:
    return RunSpan(run_id, "success" if end is not None else "running", first, end)


@pytest.mark.parametrize(
    ("runs", "expected_before", "expected_holders"),
    [
        ([], T0, []),
        ([span("done", T0 - 2 * DAY, T0 - DAY), span("later", T0 + HOUR, T0 + 2 * HOUR)], T0, []),
        # a run in progress at the cutoff keeps all of its XComs: the cutoff moves to its start
        ([span("across", T0 - HOUR, T0 + HOUR)], T0 - HOUR, ["across"]),
        # ... and a run overlapping that one is kept too
        (
            [span("across", T0 - HOUR, T0 + HOUR), span("overlap", T0 - 3 * HOUR, T0 - HOUR / 2)],
            T0 - 3 * HOUR,
            ["overlap", "across"],
        ),
        # a run still running since before the cutoff holds it back at its start
        ([span("stuck", T0 - 5 * DAY), span("old", T0 - 6 * DAY, T0 - 5.5 * DAY)], T0 - 5 * DAY, ["stuck"]),
        # a run ending exactly at the cutoff has an XCom at the cutoff, which db clean keeps
        ([span("edge", T0 - HOUR, T0)], T0 - HOUR, ["edge"]),
    ],
)
def test_purge_cutoff_moves_back_to_the_start_of_any_run_spanning_it(
    runs: list[RunSpan], expected_before: datetime, expected_holders: list[str]
) -> None:
    before, holders = purge_cutoff(runs, T0)
    assert before == expected_before
    assert [run.run_id for run in holders] == expected_holders
    for run in runs:  # every run is either entirely before the cutoff or entirely kept
        assert (run.end_date is not None and run.end_date < before) or run.first_activity >= before


def test_run_span_starts_at_the_earliest_time_known_and_is_open_until_finished() -> None:
    queued = RunSpan.from_fields("r", "queued", run_after="2026-11-28T10:00:00+00:00")
    assert queued.first_activity == T0 - 2 * HOUR and queued.end_date is None
    done = RunSpan.from_fields("r", "failed", run_after=T0, start_date=T0 - HOUR, end_date=T0 + HOUR)
    assert (done.first_activity, done.end_date) == (T0 - HOUR, T0 + HOUR)
    never_ran = RunSpan.from_fields("r", "success", run_after=T0, end_date=None)
    assert never_ran.end_date == T0
