"""A source's planned fetch task carries a page range and its paginator's rule (``SourceBatch``),
not one request a page: expanded, it makes exactly the requests the per-page plan listed, for every
paginator kind that plans; a walk's batch names page 1 only."""

from __future__ import annotations

import json
from typing import Any

import pytest
from api_poller_dev.simulator import SimulatorConfig, run_in_thread

from api_poller.core.planning import batch_page_numbers
from api_poller.partner.paginators import PageRequest
from api_poller.pipeline.source_fetch import fetch_task_arguments
from api_poller.pipeline.source_plan import batch_requests, plan_source_job
from api_poller.sources.spec import OffsetPaginatorSpec, SourceSpec

from .source_support import QUIET, SETTINGS, Conn, source

PLANNED_KINDS = ["offset_total", "page_number_pages", "page_number_records"]


def listed_request(spec: SourceSpec, base: PageRequest, page: int) -> PageRequest:
    """Page ``page``'s request as the per-page plan listed it (before batches were ranges)."""
    paginator = spec.paginator
    if isinstance(paginator, OffsetPaginatorSpec):
        updates = {paginator.offset_param: str((page - 1) * paginator.page_size)}
        updates[paginator.limit_param] = str(paginator.page_size)
    else:
        assert paginator.kind == "page_number"
        updates = {paginator.page_param: str(paginator.first_page + page - 1)}
        if paginator.size_param:
            updates[paginator.size_param] = str(paginator.page_size)
    return base.with_params(page, updates)


def plan_of(spec: SourceSpec, total: int, conf: dict[str, Any] | None = None) -> dict[str, Any]:
    with run_in_thread(SimulatorConfig(total_records=total, **QUIET)) as base_url:
        plan = plan_source_job(spec, "manual__batches", conf, SETTINGS, Conn(host=base_url), None)
    return json.loads(json.dumps(plan))  # as XCom hands it to the fetch tasks


@pytest.mark.parametrize("kind", PLANNED_KINDS)
def test_the_batches_expand_to_the_per_page_requests(kind: str) -> None:
    spec = source(kind, params={"status": "all"})
    plan = plan_of(spec, total=95, conf={"fetch_tasks": 3})
    base = PageRequest.from_dict(plan["base_request"])

    expanded = [
        list(batch_requests(arguments["base_request"], arguments["batch"]))
        for arguments in fetch_task_arguments(plan)
    ]

    assert plan["mode"] == "planned" and plan["total_pages"] == 10
    assert [[request.page for request in batch] for batch in expanded] == [
        [1, 2, 3, 4],
        [5, 6, 7],
        [8, 9, 10],
    ]
    assert [request for batch in expanded for request in batch] == [
        listed_request(spec, base, page) for page in range(1, 11)
    ]
    assert all(request.param("status") == "all" for batch in expanded for request in batch)


@pytest.mark.parametrize("kind", PLANNED_KINDS)
def test_the_plan_is_the_same_size_for_a_hundred_times_the_pages(kind: str) -> None:
    spec = source(kind, max_pages=100_000)
    small, large = (plan_of(spec, total, conf={"fetch_tasks": 4}) for total in (200, 20_000))

    assert large["total_pages"] == 100 * small["total_pages"]
    assert len(json.dumps(large)) - len(json.dumps(small)) < 100  # the numbers' digits only
    assert sum(len(batch_page_numbers(batch)) for batch in large["batches"]) == 2_000


def test_the_plan_stops_at_max_pages() -> None:
    plan = plan_of(source("offset_total", max_pages=4), total=95)

    assert plan["total_pages"] == 4
    (arguments,) = fetch_task_arguments(plan)
    assert [request.page for request in batch_requests(arguments["base_request"], arguments["batch"])] == [
        1,
        2,
        3,
        4,
    ]


@pytest.mark.parametrize("kind", ["offset_walk", "cursor", "next_url_body"])
def test_a_walk_plans_page_one_and_has_no_requests_to_expand(kind: str) -> None:
    plan = plan_of(source(kind), total=95)

    assert plan["mode"] == "walk" and plan["batches"] == [
        {"first_page": 1, "last_page": 1, "page_rule": None}
    ]
    with pytest.raises(ValueError, match="no page rule: it is walked"):
        batch_requests(plan["base_request"], plan["batches"][0])


def test_an_older_plan_s_request_list_is_read_as_it_is() -> None:
    plan = plan_of(source("offset_total"), total=95, conf={"fetch_tasks": 2})
    older = [request.to_dict() for request in batch_requests(plan["base_request"], plan["batches"][1])]

    assert batch_requests(plan["base_request"], older) == [
        PageRequest.from_dict(request) for request in older
    ]
    assert batch_page_numbers(older) == batch_page_numbers(plan["batches"][1]) == range(6, 11)
