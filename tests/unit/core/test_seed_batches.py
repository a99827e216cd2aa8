"""A seed fetch task's batch is a page range (``SeedBatch``): the same size in XCom whatever its
page count, expanding to exactly the pages the per-page plan listed; older per-page lists still read."""

from __future__ import annotations

import json

import pytest

from api_poller.core.errors import InvalidJobRequest
from api_poller.core.planning import (
    ApiMetadata,
    SeedBatch,
    batch_page_numbers,
    batch_pages,
    page_count,
    plan_batches,
    plan_pages,
    seed_batch_pages,
)

# (total records, page size, fetch tasks)
CASES = [
    (1, 1, 1),
    (1, 100, 4),
    (7, 3, 2),
    (100, 100, 3),
    (101, 100, 2),
    (250, 100, 8),
    (1000, 7, 5),
    (12345, 500, 16),
]


def metadata(total: int, size: int) -> ApiMetadata:
    return ApiMetadata(total_records=total, max_records_per_page=size)


@pytest.mark.parametrize(("total", "size", "tasks"), CASES)
def test_the_batches_expand_to_the_per_page_plan_split_the_same_way(
    total: int, size: int, tasks: int
) -> None:
    listed = batch_pages(plan_pages(metadata(total, size), size), tasks)

    ranged = plan_batches(metadata(total, size), size, tasks)

    assert [list(batch) for batch in ranged] == listed
    assert page_count(metadata(total, size), size) == sum(len(batch) for batch in ranged)


@pytest.mark.parametrize(("total", "size", "tasks"), CASES)
def test_a_batch_survives_json_and_reads_like_the_older_page_list(total: int, size: int, tasks: int) -> None:
    for ranged, listed in zip(
        plan_batches(metadata(total, size), size, tasks),
        batch_pages(plan_pages(metadata(total, size), size), tasks),
        strict=True,
    ):
        wire = json.loads(json.dumps(ranged.to_dict()))
        older = json.loads(json.dumps([page.to_dict() for page in listed]))
        assert list(seed_batch_pages(wire)) == list(seed_batch_pages(older)) == listed
        assert (
            batch_page_numbers(wire)
            == batch_page_numbers(older)
            == range(listed[0].page, listed[-1].page + 1)
        )


def test_a_batch_is_the_same_size_whatever_its_page_count() -> None:
    sizes = {
        len(json.dumps([batch.to_dict() for batch in plan_batches(metadata(pages * 100, 100), 100, 16)]))
        for pages in (1_000, 10_000, 100_000)
    }
    # Only the numbers' digits grow (a per-page list grew 100-fold from 1,000 to 100,000 pages).
    assert max(sizes) < 1.2 * min(sizes) and max(sizes) < 2_000


def test_a_batch_is_indexed_and_sliced_like_a_list_without_making_every_page() -> None:
    batch = plan_batches(metadata(1_000_000, 10), 10, 1)[0]
    listed = plan_pages(metadata(1_000_000, 10), 10)

    assert len(batch) == 100_000
    assert batch[0] == listed[0] and batch[-1] == listed[-1] and batch[4242] == listed[4242]
    assert batch[10:13] == listed[10:13]
    assert batch[-1].count == 10 and batch[-1].start_at == 999_990


def test_the_last_page_is_short_and_a_batch_past_the_records_is_refused() -> None:
    batch = SeedBatch(first_page=0, last_page=2, page_size=100, total_records=250)
    assert [page.count for page in batch] == [100, 100, 50]
    with pytest.raises(ValueError, match="ends past the job's 250 records"):
        SeedBatch(first_page=0, last_page=3, page_size=100, total_records=250)
    with pytest.raises(ValueError, match="not a batch of pages"):
        SeedBatch(first_page=2, last_page=1, page_size=100, total_records=250)


def test_plan_batches_refuses_a_non_positive_task_count() -> None:
    with pytest.raises(InvalidJobRequest, match="fetch_tasks must be a positive integer"):
        plan_batches(metadata(10, 1), 1, 0)


@pytest.mark.parametrize("batch", ["page-000001", 7, None])
def test_a_batch_that_is_neither_a_range_nor_a_list_is_a_clear_error(batch: object) -> None:
    with pytest.raises(ValueError, match="must be a mapping or a list"):
        seed_batch_pages(batch)
    with pytest.raises(ValueError, match="must be a mapping or a list"):
        batch_page_numbers(batch)
