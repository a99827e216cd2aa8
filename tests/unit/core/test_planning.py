"""Unit tests of api_poller.core.planning: metadata validation, page size, page plan and task batches."""

from __future__ import annotations

import json
from typing import Any

import pytest

from api_poller.core.errors import FatalError, InvalidJobRequest, InvalidMetadata
from api_poller.core.planning import (
    MAX_TOTAL_RECORDS,
    ApiMetadata,
    PageTask,
    batch_pages,
    choose_fetch_tasks,
    choose_page_size,
    page_id,
    parse_metadata,
    plan_pages,
    share_concurrency,
)

# (total records, page size) pairs the plan/batch properties are checked against.
PLAN_CASES = [
    (1, 1),
    (1, 100),
    (7, 3),
    (99, 100),
    (100, 100),
    (101, 100),
    (250, 100),
    (1000, 7),
    (12345, 500),
]


def pages_for(total: int, size: int) -> list[PageTask]:
    return plan_pages(ApiMetadata(total_records=total, max_records_per_page=size), size)


# --- parse_metadata ---------------------------------------------------------------------------


def test_parse_metadata_reads_valid_document() -> None:
    document = {"totalRecords": 250, "maxRecordsPerPage": 100, "payload": [{"id": 0}]}
    assert parse_metadata(document) == ApiMetadata(total_records=250, max_records_per_page=100)


def test_parse_metadata_accepts_total_at_the_limit() -> None:
    document = {"totalRecords": MAX_TOTAL_RECORDS, "maxRecordsPerPage": 100}
    assert parse_metadata(document).total_records == MAX_TOTAL_RECORDS


@pytest.mark.parametrize("field", ["totalRecords", "maxRecordsPerPage"])
def test_parse_metadata_missing_field_is_named(field: str) -> None:
    document = {"totalRecords": 250, "maxRecordsPerPage": 100}
    del document[field]
    with pytest.raises(InvalidMetadata, match=field):
        parse_metadata(document)


@pytest.mark.parametrize("field", ["totalRecords", "maxRecordsPerPage"])
@pytest.mark.parametrize(
    "value",
    [0, -1, -100, True, False, 10.0, 2.5, "100", None, [100], {"n": 100}],
    ids=[
        "zero",
        "minus-one",
        "negative",
        "true",
        "false",
        "float-whole",
        "float",
        "string",
        "null",
        "list",
        "obj",
    ],
)
def test_parse_metadata_rejects_non_positive_int_naming_field(field: str, value: Any) -> None:
    document: dict[str, Any] = {"totalRecords": 250, "maxRecordsPerPage": 100}
    document[field] = value
    with pytest.raises(InvalidMetadata, match=field):
        parse_metadata(document)


@pytest.mark.parametrize("document", [[], [{"totalRecords": 1}], "totalRecords", 42, None, b"{}"])
def test_parse_metadata_rejects_non_object_document(document: Any) -> None:
    with pytest.raises(InvalidMetadata, match="JSON object"):
        parse_metadata(document)


@pytest.mark.parametrize("total", [MAX_TOTAL_RECORDS + 1, 10**18])
def test_parse_metadata_rejects_absurd_total_naming_field(total: int) -> None:
    with pytest.raises(InvalidMetadata, match="totalRecords") as info:
        parse_metadata({"totalRecords": total, "maxRecordsPerPage": 100})
    assert str(MAX_TOTAL_RECORDS) in str(info.value)


def test_invalid_metadata_is_fatal() -> None:
    with pytest.raises(FatalError):
        parse_metadata({"maxRecordsPerPage": 100})


# --- choose_page_size -------------------------------------------------------------------------

METADATA = ApiMetadata(total_records=1000, max_records_per_page=100)


def test_choose_page_size_defaults_to_api_max() -> None:
    assert choose_page_size(METADATA, None) == 100


@pytest.mark.parametrize("requested", [1, 50, 99, 100])
def test_choose_page_size_accepts_up_to_api_max(requested: int) -> None:
    assert choose_page_size(METADATA, requested) == requested


@pytest.mark.parametrize(
    "requested",
    [101, 10_000, 0, -1, True, False, 50.0, "50"],
    ids=["above-cap", "far-above-cap", "zero", "negative", "true", "false", "float", "string"],
)
def test_choose_page_size_rejects_invalid_naming_page_size(requested: Any) -> None:
    with pytest.raises(InvalidJobRequest, match="page_size"):
        choose_page_size(METADATA, requested)


def test_choose_page_size_above_cap_mentions_api_max() -> None:
    with pytest.raises(InvalidJobRequest, match="maxRecordsPerPage 100"):
        choose_page_size(METADATA, 101)


# --- plan_pages -------------------------------------------------------------------------------


def test_plan_pages_exact_multiple_gives_full_pages() -> None:
    assert [(p.start_at, p.count) for p in pages_for(300, 100)] == [(0, 100), (100, 100), (200, 100)]


def test_plan_pages_remainder_goes_to_short_last_page() -> None:
    assert [(p.start_at, p.count) for p in pages_for(250, 100)] == [(0, 100), (100, 100), (200, 50)]


def test_plan_pages_single_record_is_one_page() -> None:
    assert pages_for(1, 100) == [PageTask(page=0, start_at=0, count=1)]


def test_plan_pages_uses_requested_size_not_api_max() -> None:
    metadata = ApiMetadata(total_records=100, max_records_per_page=100)
    assert [p.count for p in plan_pages(metadata, 30)] == [30, 30, 30, 10]


@pytest.mark.parametrize(("total", "size"), PLAN_CASES)
def test_plan_pages_page_numbers_are_contiguous_from_zero(total: int, size: int) -> None:
    pages = pages_for(total, size)
    assert [p.page for p in pages] == list(range(len(pages)))
    assert len(pages) == -(-total // size)  # ceil


@pytest.mark.parametrize(("total", "size"), PLAN_CASES)
def test_plan_pages_cover_every_record_exactly_once(total: int, size: int) -> None:
    seen = [0] * total
    for page in pages_for(total, size):
        assert 0 < page.count <= size
        for record in range(page.start_at, page.start_at + page.count):
            seen[record] += 1
    assert seen == [1] * total


@pytest.mark.parametrize(("total", "size"), PLAN_CASES)
def test_plan_pages_only_last_page_may_be_short(total: int, size: int) -> None:
    pages = pages_for(total, size)
    assert all(p.count == size for p in pages[:-1])
    assert pages[-1].start_at + pages[-1].count == total


@pytest.mark.parametrize(
    ("page", "expected"), [(0, "page-000000"), (7, "page-000007"), (123456, "page-123456")]
)
def test_page_id_is_zero_padded(page: int, expected: str) -> None:
    assert page_id(page) == expected
    assert PageTask(page=page, start_at=0, count=1).page_id == expected


def test_page_ids_sort_in_page_order() -> None:
    ids = [p.page_id for p in pages_for(1500, 1)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


# --- batch_pages ------------------------------------------------------------------------------

BATCH_CASES = [
    (1, 1),
    (1, 4),
    (3, 4),
    (4, 4),
    (8, 3),
    (9, 4),
    (12, 4),
    (16, 4),
    (100, 1),
    (100, 7),
    (101, 10),
]


@pytest.mark.parametrize(("count", "tasks"), BATCH_CASES)
def test_batch_pages_never_more_batches_than_tasks(count: int, tasks: int) -> None:
    assert 1 <= len(batch_pages(pages_for(count, 1), tasks)) <= tasks


@pytest.mark.parametrize(("count", "tasks"), BATCH_CASES)
def test_batch_pages_union_is_input_in_order(count: int, tasks: int) -> None:
    pages = pages_for(count, 1)
    batches = batch_pages(pages, tasks)
    assert all(batches)
    assert [p for batch in batches for p in batch] == pages


@pytest.mark.parametrize(("count", "tasks"), BATCH_CASES)
def test_batch_pages_batches_are_contiguous_runs(count: int, tasks: int) -> None:
    for batch in batch_pages(pages_for(count, 1), tasks):
        numbers = [p.page for p in batch]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))


@pytest.mark.parametrize(("count", "tasks"), [(1, 4), (3, 4), (5, 4), (8, 3), (9, 4), (12, 4), (100, 1)])
def test_batch_pages_sizes_differ_by_at_most_one(count: int, tasks: int) -> None:
    sizes = [len(batch) for batch in batch_pages(pages_for(count, 1), tasks)]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize(("count", "tasks"), [(10, 4), (100, 7), (101, 10), (100, 40)])
def test_batch_pages_sizes_differ_by_at_most_one_when_division_is_uneven(count: int, tasks: int) -> None:
    sizes = [len(batch) for batch in batch_pages(pages_for(count, 1), tasks)]
    assert max(sizes) - min(sizes) <= 1


def test_batch_pages_fewer_pages_than_tasks_gives_one_page_each() -> None:
    pages = pages_for(3, 1)
    assert batch_pages(pages, 8) == [[pages[0]], [pages[1]], [pages[2]]]


def test_batch_pages_single_task_gets_everything() -> None:
    pages = pages_for(50, 1)
    assert batch_pages(pages, 1) == [pages]


def test_batch_pages_no_pages_gives_no_batches() -> None:
    assert batch_pages([], 4) == []


@pytest.mark.parametrize("tasks", [0, -1])
def test_batch_pages_rejects_non_positive_task_count(tasks: int) -> None:
    with pytest.raises(InvalidJobRequest, match="fetch_tasks"):
        batch_pages(pages_for(10, 1), tasks)


# --- PageTask serialisation -------------------------------------------------------------------


def test_page_task_to_dict_has_plain_fields() -> None:
    assert PageTask(page=2, start_at=200, count=50).to_dict() == {"page": 2, "start_at": 200, "count": 50}


@pytest.mark.parametrize("task", [PageTask(0, 0, 1), PageTask(2, 200, 50), PageTask(999_999, 10**9 - 1, 1)])
def test_page_task_round_trips_through_dict_and_json(task: PageTask) -> None:
    assert PageTask.from_dict(task.to_dict()) == task
    assert PageTask.from_dict(json.loads(json.dumps(task.to_dict()))) == task


def test_page_task_from_dict_coerces_numeric_strings() -> None:
    assert PageTask.from_dict({"page": "1", "start_at": "100", "count": "100"}) == PageTask(1, 100, 100)


# --- choose_fetch_tasks / share_concurrency -----------------------------------------------------


@pytest.mark.parametrize(
    ("pages", "concurrency", "expected"),
    [
        (100, 25, 1),  # the seed workload: one task, all 25 requests in it
        (1_000, 25, 1),
        (2_001, 25, 3),
        (10_000, 25, 5),  # at least 5 requests per task
        (100_000, 512, 16),  # never more than 16 automatically
        (1, 25, 1),
        (0, 25, 1),
    ],
)
def test_choose_fetch_tasks_automatically_stays_bounded(pages: int, concurrency: int, expected: int) -> None:
    assert choose_fetch_tasks(pages, concurrency, None) == expected


@pytest.mark.parametrize("pages", [0, 1, 3, 99, 501, 10_000, 1_000_000])
@pytest.mark.parametrize("concurrency", [1, 4, 25, 512])
@pytest.mark.parametrize("requested", [None, 1, 3, 64, 256])
def test_choose_fetch_tasks_never_exceeds_concurrency_pages_or_map_length(
    pages: int, concurrency: int, requested: int | None
) -> None:
    tasks = choose_fetch_tasks(pages, concurrency, requested)
    assert 1 <= tasks <= max(1, min(concurrency, pages, 1024))
    if requested is not None:
        assert tasks <= requested


@pytest.mark.parametrize("concurrency", [1, 4, 25, 26, 512])
@pytest.mark.parametrize("requested", [1, 2, 3, 7, 16, 256])
def test_share_concurrency_shares_add_up_to_the_job_limit(concurrency: int, requested: int) -> None:
    tasks = choose_fetch_tasks(10_000, concurrency, requested)
    shares = share_concurrency(concurrency, tasks)
    assert len(shares) == tasks
    assert sum(shares) == concurrency  # the partner never sees more requests than allowed
    assert max(shares) - min(shares) <= 1
