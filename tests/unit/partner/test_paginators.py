"""Unit tests of api_poller.partner.paginators, against fake APIs built by hand (no network).

Each fake API below answers a PageRequest the way the simulator's endpoint of the same kind does,
from one dataset of 23 records, so a walk can be checked to see every record exactly once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from api_poller.core.errors import CrossOriginRequest, PaginationLoop, ResponseShapeError
from api_poller.partner.auth import Origin
from api_poller.partner.paginators import (
    PageRequest,
    PageResponse,
    Paginator,
    Stop,
    StopReason,
    base_request,
    next_link_from_header,
    paginator_for,
)
from api_poller.partner.records import RecordsPath, ValuePath
from api_poller.sources.spec import (
    CursorPaginatorSpec,
    NextUrlPaginatorSpec,
    OffsetPaginatorSpec,
    PageNumberPaginatorSpec,
    PaginatorSpec,
)

BASE = "http://api.test:8080"
ORIGIN = Origin.of(BASE)
DATA = [{"id": number, "name": f"record {number}"} for number in range(1, 24)]
TOTAL = len(DATA)
FakeApi = Callable[[PageRequest], PageResponse]


def query(request: PageRequest) -> dict[str, str]:
    return {key: values[-1] for key, values in parse_qs(urlsplit(request.full_url()).query).items()}


def respond(
    request: PageRequest, body: Any, records: str, headers: dict[str, str] | None = None
) -> PageResponse:
    return PageResponse(
        request=request,
        status=200,
        body=body,
        records=RecordsPath.parse(records).extract(body),
        headers=headers or {},
    )


def offset_api(request: PageRequest, *, cap: int = 1000, total: Any = TOTAL) -> PageResponse:
    params = query(request)
    start, limit = int(params["offset"]), min(int(params["limit"]), cap)
    body = {"data": {"items": DATA[start : start + limit]}, "meta": {"total": total}}
    return respond(request, body, "data.items")


def pages_api(request: PageRequest, *, first_page: int = 1, default_size: int = 5) -> PageResponse:
    params = query(request)
    size = int(params.get("per_page", default_size))
    start = (int(params["page"]) - first_page) * size
    pages = -(-len(DATA) // size)
    body = {"results": DATA[start : start + size], "total_records": len(DATA), "total_pages": pages}
    return respond(request, body, "results")


def cursor_api(request: PageRequest) -> PageResponse:
    params = query(request)
    start, limit = int(params.get("cursor", 0)), int(params.get("limit", 5))
    following = start + limit
    body = {"items": DATA[start:following], "next_cursor": str(following) if following < len(DATA) else None}
    return respond(request, body, "items")


def has_more_api(request: PageRequest) -> PageResponse:
    params = query(request)
    after, limit = int(params.get("after", 0)), int(params.get("limit", 5))
    records = [record for record in DATA if record["id"] > after][:limit]
    body = {"records": records, "has_more": bool(records) and records[-1]["id"] < DATA[-1]["id"]}
    return respond(request, body, "records")


def next_body_api(request: PageRequest) -> PageResponse:
    page = int(query(request).get("page", 1))
    start = (page - 1) * 5
    following = f"/next-body/items?page={page + 1}" if start + 5 < len(DATA) else None
    return respond(request, {"items": DATA[start : start + 5], "links": {"next": following}}, "items")


def link_api(request: PageRequest) -> PageResponse:
    params = query(request)
    page, size = int(params.get("page", 1)), int(params.get("per_page", 5))
    start = (page - 1) * size
    links = [f'<{BASE}/link/items?page=1&per_page={size}>; rel="first"']
    if start + size < len(DATA):
        links.append(f'<{BASE}/link/items?page={page + 1}&per_page={size}>; rel="next"')
    return respond(request, DATA[start : start + size], "$", {"link": ", ".join(links)})


def make(
    spec: PaginatorSpec, path: str, *, max_pages: int = 1000, params: dict[str, str] | None = None
) -> Paginator:
    return paginator_for(spec, base_request(BASE + path, params), origin=ORIGIN, max_pages=max_pages)


def walk(paginator: Paginator, api: FakeApi) -> tuple[list[dict[str, Any]], Stop, list[PageRequest]]:
    """Every page one after another, as a sequential fetch does: (records, stop, requests)."""
    request = paginator.first_request()
    records: list[dict[str, Any]] = []
    requests: list[PageRequest] = []
    for _ in range(1000):
        requests.append(request)
        response = api(request)
        records.extend(response.records)
        step = paginator.next_request(response)
        if isinstance(step, Stop):
            return records, step, requests
        # The request travels as a dict (XCom, SQS) between two pages.
        request = PageRequest.from_dict(json.loads(json.dumps(step.to_dict())))
    raise AssertionError("the walk did not stop")


WALKS = [
    (
        "offset, no total",
        OffsetPaginatorSpec(page_size=5),
        "/offset/items",
        offset_api,
        StopReason.EMPTY_PAGE,
        6,
    ),
    (
        "offset, total",
        OffsetPaginatorSpec(page_size=5, total_path=ValuePath.parse("meta.total")),
        "/offset/items",
        offset_api,
        StopReason.LAST_PAGE,
        5,
    ),
    (
        "page number, total pages",
        PageNumberPaginatorSpec(page_size=5, total_pages_path=ValuePath.parse("total_pages")),
        "/pages/items",
        pages_api,
        StopReason.LAST_PAGE,
        5,
    ),
    (
        "page number, total records",
        PageNumberPaginatorSpec(page_size=5, total_records_path=ValuePath.parse("total_records")),
        "/pages/items",
        pages_api,
        StopReason.LAST_PAGE,
        5,
    ),
    (
        "page number, no total",
        PageNumberPaginatorSpec(page_size=5),
        "/pages/items",
        pages_api,
        StopReason.EMPTY_PAGE,
        6,
    ),
    (
        "cursor in the body",
        CursorPaginatorSpec(cursor_path=ValuePath.parse("next_cursor"), page_size=5),
        "/cursor/items",
        cursor_api,
        StopReason.NO_CURSOR,
        5,
    ),
    (
        "has_more and the last id",
        CursorPaginatorSpec(
            has_more_path=ValuePath.parse("has_more"), cursor_key="id", cursor_param="after", page_size=5
        ),
        "/cursor-has-more/items",
        has_more_api,
        StopReason.HAS_MORE_FALSE,
        5,
    ),
    (
        "next link in the body",
        NextUrlPaginatorSpec(next_url_path=ValuePath.parse("links.next")),
        "/next-body/items",
        next_body_api,
        StopReason.NO_NEXT_LINK,
        5,
    ),
    (
        "Link header",
        NextUrlPaginatorSpec(link_header=True, limit_param="per_page", page_size=5),
        "/link/items",
        link_api,
        StopReason.NO_NEXT_LINK,
        5,
    ),
]


@pytest.mark.parametrize(
    ("spec", "path", "api", "reason", "requests"),
    [case[1:] for case in WALKS],
    ids=[case[0] for case in WALKS],
)
def test_walk_reads_every_record_once_and_says_why_it_stopped(
    spec: PaginatorSpec, path: str, api: FakeApi, reason: StopReason, requests: int
) -> None:
    records, stop, sent = walk(make(spec, path), api)

    assert records == DATA
    assert stop.reason is reason and not stop.truncated
    assert len(sent) == requests
    assert [request.page for request in sent] == list(range(1, requests + 1))
    assert all(request.full_url().startswith(BASE + path) for request in sent)


def test_fixed_params_are_kept_on_every_request() -> None:
    paginator = make(OffsetPaginatorSpec(page_size=5), "/offset/items", params={"status": "all"})

    _, _, sent = walk(paginator, offset_api)

    assert all(query(request)["status"] == "all" for request in sent)
    assert sent[1].full_url() == f"{BASE}/offset/items?status=all&offset=5&limit=5"


def test_page_number_counts_from_zero_when_told() -> None:
    spec = PageNumberPaginatorSpec(page_size=5, first_page=0, total_pages_path=ValuePath.parse("total_pages"))

    records, stop, sent = walk(make(spec, "/pages/items"), lambda request: pages_api(request, first_page=0))

    assert records == DATA and stop.reason is StopReason.LAST_PAGE
    assert [query(request)["page"] for request in sent] == ["0", "1", "2", "3", "4"]


def test_page_number_without_size_param_uses_the_apis_page_size() -> None:
    spec = PageNumberPaginatorSpec(size_param=None, total_records_path=ValuePath.parse("total_records"))
    paginator = make(spec, "/pages/items")

    records, stop, sent = walk(paginator, lambda request: pages_api(request, default_size=4))

    assert records == DATA and stop.reason is StopReason.LAST_PAGE and len(sent) == 6
    assert all("per_page" not in query(request) for request in sent)


# --- Planning: the first response tells the total ----------------------------------------------


@pytest.mark.parametrize(
    ("spec", "path", "api"),
    [
        (
            OffsetPaginatorSpec(page_size=5, total_path=ValuePath.parse("meta.total")),
            "/offset/items",
            offset_api,
        ),
        (
            PageNumberPaginatorSpec(page_size=5, total_pages_path=ValuePath.parse("total_pages")),
            "/pages/items",
            pages_api,
        ),
        (
            PageNumberPaginatorSpec(page_size=5, total_records_path=ValuePath.parse("total_records")),
            "/pages/items",
            pages_api,
        ),
    ],
    ids=["offset", "page number by pages", "page number by records"],
)
def test_plan_lists_pages_two_to_n_which_hold_every_other_record_once(
    spec: PaginatorSpec, path: str, api: FakeApi
) -> None:
    paginator = make(spec, path)
    first = api(paginator.first_request())

    planned = paginator.plan(first)

    assert planned is not None
    assert paginator.total_pages(first) == 5
    assert [request.page for request in planned] == [2, 3, 4, 5]
    planned = [PageRequest.from_dict(json.loads(json.dumps(request.to_dict()))) for request in planned]
    assert list(first.records) + [record for request in planned for record in api(request).records] == DATA


def test_offset_plan_requests_the_expected_offsets() -> None:
    paginator = make(
        OffsetPaginatorSpec(page_size=10, total_path=ValuePath.parse("meta.total")), "/offset/items"
    )
    planned = paginator.plan(offset_api(paginator.first_request())) or []

    assert [query(request)["offset"] for request in planned] == ["10", "20"]
    assert {query(request)["limit"] for request in planned} == {"10"}


@pytest.mark.parametrize(
    "spec",
    [
        OffsetPaginatorSpec(page_size=5),
        PageNumberPaginatorSpec(page_size=5),
        CursorPaginatorSpec(cursor_path=ValuePath.parse("next_cursor")),
    ],
)
def test_without_a_total_nothing_is_planned(spec: PaginatorSpec) -> None:
    paginator = make(spec, "/offset/items")
    first = (
        offset_api(paginator.first_request())
        if spec.kind == "offset"
        else respond(paginator.first_request(), {"items": DATA[:5], "results": DATA[:5]}, "items")
    )

    assert paginator.plan(first) is None


def test_empty_total_plans_no_more_pages() -> None:
    paginator = make(
        OffsetPaginatorSpec(page_size=5, total_path=ValuePath.parse("meta.total")), "/offset/items"
    )
    first = respond(paginator.first_request(), {"data": {"items": []}, "meta": {"total": 0}}, "data.items")

    assert paginator.plan(first) == []
    assert paginator.next_request(first) == Stop(StopReason.EMPTY_PAGE, 1, "page 1 has no records")


def test_plan_is_capped_at_max_pages() -> None:
    paginator = make(
        OffsetPaginatorSpec(page_size=5, total_path=ValuePath.parse("meta.total")),
        "/offset/items",
        max_pages=3,
    )

    planned = paginator.plan(offset_api(paginator.first_request())) or []

    assert [request.page for request in planned] == [2, 3]


def test_plan_refuses_an_api_that_caps_the_page_size() -> None:
    paginator = make(
        OffsetPaginatorSpec(page_size=5, total_path=ValuePath.parse("meta.total")), "/offset/items"
    )
    first = offset_api(paginator.first_request(), cap=3)

    with pytest.raises(ResponseShapeError, match="the API caps its page size; set page_size to 3"):
        paginator.plan(first)


def test_offset_walk_advances_by_what_came_back_when_the_api_caps_the_page_size() -> None:
    records, stop, _ = walk(
        make(OffsetPaginatorSpec(page_size=5), "/offset/items"), lambda r: offset_api(r, cap=3)
    )

    assert records == DATA and stop.reason is StopReason.EMPTY_PAGE


@pytest.mark.parametrize("total", ["lots", "12abc", 7.5, True, {"value": 23}])
def test_a_total_that_is_not_a_number_is_a_clear_error(total: Any) -> None:
    paginator = make(
        OffsetPaginatorSpec(page_size=5, total_path=ValuePath.parse("meta.total")), "/offset/items"
    )
    first = offset_api(paginator.first_request(), total=total)

    with pytest.raises(
        ResponseShapeError, match=r"total at 'meta.total' is .* not a whole non-negative number"
    ):
        paginator.plan(first)
    with pytest.raises(ResponseShapeError, match="not a whole non-negative number"):
        paginator.next_request(first)


# --- Stop rules, loops, origins --------------------------------------------------------------


def test_max_pages_stops_a_walk_that_would_go_on_and_says_so() -> None:
    records, stop, sent = walk(
        make(OffsetPaginatorSpec(page_size=5), "/offset/items", max_pages=2), offset_api
    )

    assert records == DATA[:10] and len(sent) == 2
    assert stop.reason is StopReason.MAX_PAGES and stop.truncated and stop.page == 2


def test_max_pages_is_not_reported_when_the_api_ends_there() -> None:
    spec = CursorPaginatorSpec(cursor_path=ValuePath.parse("next_cursor"), page_size=5)

    _, stop, _ = walk(make(spec, "/cursor/items", max_pages=5), cursor_api)

    assert stop.reason is StopReason.NO_CURSOR


@pytest.mark.parametrize("cursor", [None, "", "missing"])
def test_no_cursor_stops(cursor: str | None) -> None:
    paginator = make(CursorPaginatorSpec(cursor_path=ValuePath.parse("next_cursor")), "/cursor/items")
    body: dict[str, Any] = {"items": DATA[:5]}
    if cursor != "missing":
        body["next_cursor"] = cursor

    step = paginator.next_request(respond(paginator.first_request(), body, "items"))

    assert isinstance(step, Stop) and step.reason is StopReason.NO_CURSOR


def test_a_repeated_cursor_is_a_loop_error() -> None:
    paginator = make(CursorPaginatorSpec(cursor_path=ValuePath.parse("next_cursor")), "/cursor/items")
    first = respond(paginator.first_request(), {"items": DATA[:5], "next_cursor": "abc"}, "items")
    second_request = paginator.next_request(first)
    assert isinstance(second_request, PageRequest) and second_request.param("cursor") == "abc"
    second = respond(second_request, {"items": DATA[5:10], "next_cursor": "def"}, "items")
    third_request = paginator.next_request(second)
    assert isinstance(third_request, PageRequest)
    third = respond(third_request, {"items": DATA[10:15], "next_cursor": "abc"}, "items")

    with pytest.raises(PaginationLoop, match=r"page 3 points to cursor 'abc' again .*for page 2"):
        paginator.next_request(third)


def test_a_next_link_back_to_an_earlier_page_is_a_loop_error() -> None:
    paginator = make(NextUrlPaginatorSpec(next_url_path=ValuePath.parse("links.next")), "/next-body/items")
    first = respond(paginator.first_request(), {"items": DATA[:5], "links": {"next": "?page=2"}}, "items")
    second = paginator.next_request(first)
    assert isinstance(second, PageRequest) and second.url == f"{BASE}/next-body/items?page=2"

    looping = respond(second, {"items": DATA[5:10], "links": {"next": "/next-body/items"}}, "items")
    with pytest.raises(PaginationLoop, match="next_url pagination loops"):
        paginator.next_request(looping)


def test_has_more_walk_sends_the_last_records_key() -> None:
    spec = CursorPaginatorSpec(
        has_more_path=ValuePath.parse("has_more"), cursor_key="id", cursor_param="after"
    )
    paginator = make(spec, "/cursor-has-more/items")

    step = paginator.next_request(
        respond(paginator.first_request(), {"records": DATA[:3], "has_more": True}, "records")
    )

    assert isinstance(step, PageRequest) and step.param("after") == "3"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"records": DATA[:3]}, "has_more path 'has_more' matches nothing"),
        ({"records": DATA[:3], "has_more": "yes"}, "not true or false"),
        ({"records": [{"name": "no id"}], "has_more": True}, "has no 'id'"),
        ({"records": [{"id": {"nested": 1}}], "has_more": True}, "a cursor must be a string or a number"),
    ],
)
def test_has_more_bodies_that_do_not_fit_are_clear_errors(body: dict[str, Any], words: str) -> None:
    spec = CursorPaginatorSpec(
        has_more_path=ValuePath.parse("has_more"), cursor_key="id", cursor_param="after"
    )
    paginator = make(spec, "/cursor-has-more/items")

    with pytest.raises(ResponseShapeError, match=words):
        paginator.next_request(respond(paginator.first_request(), body, "records"))


def test_has_more_null_stops() -> None:
    spec = CursorPaginatorSpec(has_more_path=ValuePath.parse("has_more"), cursor_key="id")
    paginator = make(spec, "/cursor-has-more/items")

    step = paginator.next_request(
        respond(paginator.first_request(), {"records": DATA[:3], "has_more": None}, "records")
    )

    assert isinstance(step, Stop) and step.reason is StopReason.HAS_MORE_FALSE


@pytest.mark.parametrize(
    ("link", "named"),
    [
        ("https://evil.example/next-body/items?page=2", "https://evil.example"),
        ("http://api.test:9999/next-body/items?page=2", "http://api.test:9999"),
        ("https://api.test:8080/next-body/items?page=2", "https://api.test:8080"),
        ("//evil.example/items", "http://evil.example"),
    ],
    ids=["other host", "other port", "other scheme", "scheme-relative"],
)
def test_a_next_link_to_another_origin_is_refused_naming_it(link: str, named: str) -> None:
    paginator = make(NextUrlPaginatorSpec(next_url_path=ValuePath.parse("links.next")), "/next-body/items")
    first = respond(paginator.first_request(), {"items": DATA[:5], "links": {"next": link}}, "items")

    with pytest.raises(CrossOriginRequest) as caught:
        paginator.next_request(first)

    assert named in str(caught.value) and "refused before any request" in str(caught.value)


def test_a_link_header_to_another_host_is_refused() -> None:
    paginator = make(NextUrlPaginatorSpec(link_header=True), "/link/items")
    first = respond(
        paginator.first_request(), DATA[:5], "$", {"Link": '<https://evil.example/items?page=2>; rel="next"'}
    )

    with pytest.raises(CrossOriginRequest, match=r"evil\.example"):
        paginator.next_request(first)


def test_a_base_url_on_another_origin_is_refused_before_any_request() -> None:
    with pytest.raises(CrossOriginRequest, match=r"the source's URL is on https://evil\.example"):
        paginator_for(
            OffsetPaginatorSpec(), base_request("https://evil.example/items"), origin=ORIGIN, max_pages=10
        )


def test_a_next_link_that_is_not_a_string_is_a_clear_error() -> None:
    paginator = make(NextUrlPaginatorSpec(next_url_path=ValuePath.parse("links.next")), "/next-body/items")
    first = respond(paginator.first_request(), {"items": DATA[:5], "links": {"next": 2}}, "items")

    with pytest.raises(ResponseShapeError, match="not a URL string"):
        paginator.next_request(first)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('<https://a/2>; rel="next"', "https://a/2"),
        ('<https://a/1>; rel="prev", <https://a/3>; rel="next", <https://a/9>; rel="last"', "https://a/3"),
        ("<https://a/3>; rel=next", "https://a/3"),
        ('<https://a/3>; title="x, y"; rel="next last"', "https://a/3"),
        ('<https://a/q?x=1,2>; REL="Next"', "https://a/q?x=1,2"),
        ('<https://a/1>; rel="prev"', None),
        ("", None),
        (None, None),
    ],
)
def test_link_header_next_target(header: str | None, expected: str | None) -> None:
    assert next_link_from_header(header) == expected


def test_page_request_round_trips_through_json() -> None:
    request = PageRequest(url=f"{BASE}/items", params=(("status", "all"), ("offset", "5")), page=2)

    assert PageRequest.from_dict(json.loads(json.dumps(request.to_dict()))) == request
    assert request.full_url() == f"{BASE}/items?status=all&offset=5"


def test_a_total_path_that_matches_nothing_in_the_first_response_is_a_clear_error() -> None:
    spec = PageNumberPaginatorSpec(page_size=5, total_pages_path=ValuePath.parse("meta.pages"))
    paginator = make(spec, "/pages/items")

    with pytest.raises(
        ResponseShapeError, match=r"total path 'meta.pages' matches nothing .*\$ has no key 'meta'"
    ):
        paginator.plan(pages_api(paginator.first_request()))


def test_a_later_page_without_the_total_walks_on() -> None:
    spec = OffsetPaginatorSpec(page_size=5, total_path=ValuePath.parse("meta.total"))
    paginator = make(spec, "/offset/items")
    second = paginator.next_request(offset_api(paginator.first_request()))
    assert isinstance(second, PageRequest)

    step = paginator.next_request(respond(second, {"data": {"items": DATA[5:10]}}, "data.items"))

    assert isinstance(step, PageRequest) and step.param("offset") == "10"


def test_a_walk_resumes_on_a_fresh_paginator_from_a_saved_request() -> None:
    spec = CursorPaginatorSpec(cursor_path=ValuePath.parse("next_cursor"), page_size=5)
    first_walk = make(spec, "/cursor/items")
    request = first_walk.first_request()
    for _ in range(2):
        step = first_walk.next_request(cursor_api(request))
        assert isinstance(step, PageRequest)
        request = step
    third = request.to_dict()  # saved; then the task dies

    resumed = make(spec, "/cursor/items")
    request = PageRequest.from_dict(third)
    records: list[dict[str, Any]] = []
    while True:
        response = cursor_api(request)
        records.extend(response.records)
        step = resumed.next_request(response)
        if isinstance(step, Stop):
            break
        request = step

    assert request.page == 5 and records == DATA[10:]
