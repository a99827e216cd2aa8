"""Which fetch tasks a rerun of the failed pages clears (no Airflow needed)."""

from __future__ import annotations

from api_poller.jobs_api.rerun import failed_pages, fetch_owner, fetch_rerun

DONE = {"state": "SuccessfullyCompleted"}
FAILED = {"state": "FailedToComplete", "reason": "HTTP 404"}
PLANNED = {f"page-{n:06d}": {"FetchMapIndex": n // 2} for n in range(6)}  # three batches of two


def test_failed_pages_are_the_failed_to_complete_ones_in_page_order():
    statuses = {"page-000003": FAILED, "page-000001": FAILED, "page-000002": DONE}
    assert failed_pages(statuses) == ["page-000001", "page-000003"]


def test_the_fetch_task_that_recorded_a_page_owns_it_as_a_walks_pages_are_only_known_that_way():
    records = {0: {"page-000000": DONE, "page-000007": FAILED}}  # a walk found page 7
    assert fetch_owner("page-000007", records, {"page-000000": {"FetchMapIndex": 0}}) == 0
    assert fetch_owner("page-000004", {}, PLANNED) == 2  # not recorded yet: the plan's batch
    assert fetch_owner("page-000099", records, PLANNED) is None


def test_only_the_batches_of_pages_that_failed_to_fetch_are_cleared():
    statuses = {page: DONE for page in PLANNED} | {"page-000001": FAILED, "page-000004": FAILED}
    rerun = fetch_rerun(
        ["page-000001", "page-000004"],
        redriven={"page-000004"},  # its dead letter went back: the consumer processes it again
        failed_fetch_tasks=[],
        fetch_records={},
        planned=PLANNED,
        statuses=statuses,
    )
    assert (rerun.map_indexes, rerun.pages) == ([0], ["page-000001"])


def test_a_fetch_task_that_failed_as_a_whole_reruns_its_unfinished_pages():
    statuses = {"page-000000": DONE, "page-000002": DONE, "page-000003": {"state": "Started"}}
    rerun = fetch_rerun(
        [], redriven=set(), failed_fetch_tasks=[1], fetch_records={}, planned=PLANNED, statuses=statuses
    )
    assert (rerun.map_indexes, rerun.pages) == ([1], ["page-000003"])
