"""The progress document: a planned job's is the seed's; a walk's says whether its Total is known."""

from __future__ import annotations

from api_poller.adapters.progress import job_progress
from api_poller.core.planning import page_id
from api_poller.core.status_document import JobStatus, records_summary


def records(*states: str) -> JobStatus:
    """The merged status of one task that recorded these states for pages 1, 2, ..."""
    recorded = {page_id(number): {"state": state, "at": 1.0} for number, state in enumerate(states, start=1)}
    return JobStatus.merge([records_summary(recorded)])


def test_a_planned_job_reports_its_planned_total_and_nothing_more() -> None:
    document = job_progress([10], records("SuccessfullyCompleted", "Enqueued"), walk_ended=False)
    assert document == {
        "Started": 0,
        "PayloadSaved": 0,
        "Enqueued": 1,
        "SuccessfullyCompleted": 1,
        "FailedToComplete": 0,
        "Total": 10,
    }
    assert job_progress([], records(), walk_ended=False)["Total"] == 0  # before the plan


def test_a_walk_counts_the_pages_discovered_so_far_until_its_total_is_known() -> None:
    going = job_progress([None], records("SuccessfullyCompleted", "Enqueued", "Started"), walk_ended=False)
    assert going["Total"] == 3 and going["TotalKnown"] is False

    ended = job_progress([None], records(*["SuccessfullyCompleted"] * 4), walk_ended=True)
    assert ended["Total"] == ended["SuccessfullyCompleted"] == 4 and ended["TotalKnown"] is True
