"""planned_pages: the job API's view of a plan, read from its page ranges without listing every
page, and the same for a run planned before batches were ranges (still in the metadata DB)."""

from __future__ import annotations

import pytest

from api_poller.core.page_bits import page_number, pages_mask
from api_poller.core.planning import ApiMetadata, batch_pages, plan_batches, plan_pages
from api_poller.jobs_api.page_details import planned_pages

URL = "http://partner.test/records"


def seed_plan(total: int, size: int, tasks: int) -> list[dict]:
    metadata = ApiMetadata(total_records=total, max_records_per_page=size)
    return [{"batch": batch.to_dict(), "url": URL} for batch in plan_batches(metadata, size, tasks)]


def older_seed_plan(total: int, size: int, tasks: int) -> list[dict]:
    metadata = ApiMetadata(total_records=total, max_records_per_page=size)
    pages = batch_pages(plan_pages(metadata, size), tasks)
    return [{"batch": [page.to_dict() for page in batch], "url": URL} for batch in pages]


def source_plan(ranges: list[tuple[int, int]], mode: str = "planned") -> list[dict]:
    rule = [["offset", 0, 10], ["limit", 10, 0]] if mode == "planned" else None
    base = {"url": URL, "params": [], "page": 1}
    return [
        {
            "mode": mode,
            "base_request": base,
            "batch": {"first_page": first, "last_page": last, "page_rule": rule},
        }
        for first, last in ranges
    ]


def test_a_seed_plan_lists_each_page_s_records_and_fetch_task() -> None:
    assert planned_pages(seed_plan(total=25, size=10, tasks=2)) == {
        "page-000000": {"StartAt": 0, "Count": 10, "FetchMapIndex": 0},
        "page-000001": {"StartAt": 10, "Count": 10, "FetchMapIndex": 0},
        "page-000002": {"StartAt": 20, "Count": 5, "FetchMapIndex": 1},
    }


@pytest.mark.parametrize(("total", "size", "tasks"), [(1, 1, 1), (25, 10, 2), (1000, 7, 5), (12345, 100, 16)])
def test_an_older_plan_s_page_lists_read_the_same(total: int, size: int, tasks: int) -> None:
    ranged, listed = (
        planned_pages(seed_plan(total, size, tasks)),
        planned_pages(older_seed_plan(total, size, tasks)),
    )

    assert ranged == listed
    assert list(ranged) == list(listed) and ranged.count == listed.count == -(-total // size)
    assert list(ranged.items()) == [(page, ranged[page]) for page in ranged]  # in page order


def test_a_source_plan_has_page_numbers_only() -> None:
    planned = planned_pages(source_plan([(1, 2), (3, 3)]))

    assert dict(planned) == {
        "page-000001": {"StartAt": None, "Count": None, "FetchMapIndex": 0},
        "page-000002": {"StartAt": None, "Count": None, "FetchMapIndex": 0},
        "page-000003": {"StartAt": None, "Count": None, "FetchMapIndex": 1},
    }


def test_a_walk_plans_its_first_page_only() -> None:
    planned = planned_pages(source_plan([(1, 1)], mode="walk"))

    assert planned.count == 1 and list(planned) == ["page-000001"]
    assert planned["page-000001"]["FetchMapIndex"] == 0


def test_a_hundred_thousand_pages_are_counted_found_and_sliced_without_listing_them() -> None:
    planned = planned_pages(seed_plan(total=10_000_000, size=100, tasks=16))

    assert planned.count == len(planned) == 100_000
    assert "page-099999" in planned and "page-100000" not in planned
    assert planned["page-042000"] == {"StartAt": 4_200_000, "Count": 100, "FetchMapIndex": 6}
    assert planned.fetch_map_index(0) == 0 and planned.fetch_map_index(99_999) == 15
    assert planned.fetch_map_index(100_000) is None
    # 6,250 pages a task: a slice across two tasks' ranges, and one past the end.
    assert planned.page_ids(6_248, 6_252) == [f"page-{n:06d}" for n in range(6_248, 6_252)]
    assert planned.page_ids(99_998) == ["page-099998", "page-099999"]
    assert planned.page_ids(100_000, 100_010) == []
    assert planned.mask() == (1 << 100_000) - 1  # pages 0 .. 99,999, the bitmap /tasks filters on


def test_the_bitmap_of_planned_pages_holds_exactly_the_planned_ones() -> None:
    for plan in (older_seed_plan(95, 10, 3), source_plan([(1, 4), (5, 9)]), source_plan([(1, 1)], "walk")):
        planned = planned_pages(plan)
        assert planned.mask() == pages_mask(page_number(page) for page in planned)


@pytest.mark.parametrize("page", ["page-7", "page-0000001", "page-", "7", 7, None])
def test_what_is_not_a_planned_page_id_is_not_in_the_plan(page: object) -> None:
    planned = planned_pages(seed_plan(total=100, size=1, tasks=2))

    assert page not in planned
    with pytest.raises(KeyError):
        planned[page]  # type: ignore[index]


def test_no_plan_plans_no_pages() -> None:
    for output in (None, [], {"batch": []}, [{}], [None]):
        assert planned_pages(output).count == 0 and planned_pages(output) == {}
