"""Unit tests of api_poller.pipeline.reconcile.reconcile_output against moto's S3 in process."""

from __future__ import annotations

import json
from typing import Any

import pytest

from api_poller.aws.clients import S3Client
from api_poller.core.keys import processed_key
from api_poller.core.planning import PageTask
from api_poller.pipeline.reconcile import reconcile_output
from api_poller.settings import PollerSettings
from tests.unit.pipeline.conftest import MotoStack

BUCKET = PollerSettings().processed_bucket
JOB = "manual__2026-12-02T05:00:00+00:00"
PAGE_SIZE = 4
PAGES = [PageTask(page=n, start_at=n * PAGE_SIZE, count=PAGE_SIZE) for n in range(3)]
TOTAL = 3 * PAGE_SIZE


@pytest.fixture
def s3(stack: MotoStack) -> S3Client:
    return stack.s3


def write_page(
    s3: Any, page: PageTask, ids: list[int] | None = None, stored_count: int | None = None
) -> None:
    """A processed page as the process step writes it: ndjson, its record count as metadata."""
    ids = list(range(page.start_at, page.start_at + page.count)) if ids is None else ids
    body = "".join(json.dumps({"id": i}) + "\n" for i in ids).encode()
    count = len(ids) if stored_count is None else stored_count
    s3.put_object(
        Bucket=BUCKET, Key=processed_key(JOB, page.page_id), Body=body, Metadata={"records": str(count)}
    )


def reconcile(s3: Any, *, full: bool, statuses: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    return reconcile_output(
        s3_client=s3,
        processed_bucket=BUCKET,
        job_id=JOB,
        pages=PAGES,
        total_records=TOTAL,
        statuses=statuses or {},
        read_output=full,
        workers=2,
    )


@pytest.mark.parametrize("full", [True, False], ids=["full", "counts"])
def test_a_complete_output_is_complete(s3: Any, full: bool) -> None:
    for page in PAGES:
        write_page(s3, page)

    result = reconcile(s3, full=full)

    assert result["complete"] is True
    assert result["mode"] == ("full" if full else "counts")
    assert (result["recordsWritten"], result["uniqueRecords"], result["recordsMissing"]) == (TOTAL, TOTAL, 0)
    assert (result["pagesWithOutput"], result["pagesMissingCount"]) == (3, 0)


@pytest.mark.parametrize("full", [True, False], ids=["full", "counts"])
def test_a_page_without_output_is_missing(s3: Any, full: bool) -> None:
    write_page(s3, PAGES[0])
    write_page(s3, PAGES[2])

    result = reconcile(s3, full=full)

    assert result["complete"] is False
    assert result["pagesMissing"] == [PAGES[1].page_id]
    assert result["pagesMissingCount"] == 1
    assert result["recordsMissing"] == PAGE_SIZE


def test_a_page_with_fewer_records_than_planned_has_the_wrong_count(s3: Any) -> None:
    for page in PAGES[:2]:
        write_page(s3, page)
    write_page(s3, PAGES[2], ids=[8, 9, 10])

    result = reconcile(s3, full=True)

    assert result["complete"] is False
    assert result["pagesWithWrongCount"] == {PAGES[2].page_id: {"planned": PAGE_SIZE, "written": 3}}
    assert result["recordsMissing"] == 1


def test_full_mode_finds_an_id_written_twice(s3: Any) -> None:
    write_page(s3, PAGES[0])
    write_page(s3, PAGES[1], ids=[3, 5, 6, 7])  # id 3 is also on page 0; id 4 never arrives
    write_page(s3, PAGES[2])

    result = reconcile(s3, full=True)

    assert result["complete"] is False
    assert (result["duplicateIds"], result["duplicateIdsCount"]) == ([3], 1)
    assert result["recordsWritten"] == TOTAL
    assert (result["uniqueRecords"], result["recordsMissing"]) == (TOTAL - 1, 1)


def test_counts_mode_takes_each_pages_count_from_its_status(s3: Any) -> None:
    for page in PAGES:
        write_page(s3, page)  # the objects say 4 records each
    statuses = {page.page_id: {"state": "SuccessfullyCompleted", "records": PAGE_SIZE} for page in PAGES}
    statuses[PAGES[1].page_id]["records"] = 2

    result = reconcile(s3, full=False, statuses=statuses)

    assert result["pagesWithWrongCount"] == {PAGES[1].page_id: {"planned": PAGE_SIZE, "written": 2}}
    assert result["recordsWritten"] == TOTAL - 2
    assert result["complete"] is False


def test_counts_mode_reads_the_count_of_pages_processed_elsewhere_from_the_objects_metadata(s3: Any) -> None:
    write_page(s3, PAGES[0])
    write_page(s3, PAGES[1], stored_count=3)  # what the consumer that processed it stored
    write_page(s3, PAGES[2])
    # Pages 1 and 2 were processed by another consumer: their statuses carry no count.
    statuses = {PAGES[0].page_id: {"state": "SuccessfullyCompleted", "records": PAGE_SIZE}}

    result = reconcile(s3, full=False, statuses=statuses)

    assert result["pagesWithWrongCount"] == {PAGES[1].page_id: {"planned": PAGE_SIZE, "written": 3}}
    assert result["recordsWritten"] == TOTAL - 1
