"""Tests of the simulator's source endpoints: paginators, auth kinds, incremental filters and
appends, misbehaviour, and the recording server -- against real servers (no mocks)."""

from __future__ import annotations

import base64
import itertools
import json
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from api_poller_dev.simulator import (
    AuthConfig,
    Misbehaviour,
    SimulatorConfig,
    parse_args,
    record_id,
    record_text,
    recording_server,
    run_in_thread,
)

PAGINATORS = ("offset", "pages", "cursor", "cursor-has-more", "next-body", "link")
QUIET: dict[str, Any] = {"latency_ms": 0, "error_rate": 0}


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def body(self) -> Any:
        return json.loads(self.raw)


class LoopDetected(AssertionError):
    """The client would ask for a URL it asked for before."""

    def __init__(self, urls: list[str]) -> None:
        super().__init__(f"repeated request after {len(urls) - 1} pages: {urls[-1]}")
        self.urls = urls


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx comes back as it is


_OPENER = urllib.request.build_opener(_NoRedirects)


def call(
    url: str, *, method: str = "GET", headers: dict[str, str] | None = None, data: bytes | None = None
) -> Answer:
    """One request, whatever the status, never following a redirect."""
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with _OPENER.open(request, timeout=10) as response:
            return Answer(response.status, dict(response.headers.items()), response.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, dict(error.headers.items()), error.read())


def post_json(url: str, payload: Any) -> Answer:
    headers = {"Content-Type": "application/json"}
    return call(url, method="POST", headers=headers, data=json.dumps(payload).encode())


def next_link(link_header: str | None) -> str | None:
    """The rel="next" target of a Link header (RFC 8288), or None."""
    for target, rel in re.findall(r'<([^>]*)>\s*;\s*rel="([^"]*)"', link_header or ""):
        if rel == "next":
            return target
    return None


def walk(
    base_url: str,
    paginator: str,
    *,
    query: str = "",
    auth_query: str = "",
    limit: int = 40,
    first_page: int = 1,
    headers: dict[str, str] | None = None,
    max_pages: int = 100,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Every record a client following ``paginator``'s stop rules gets, and the URLs it asked for.

    ``query`` goes into the first URL (next links keep it); ``auth_query`` is added to every
    request, as a client adds its credentials (never part of the URLs returned).
    """
    extra = f"&{query}" if query else ""
    records: list[dict[str, Any]] = []
    urls: list[str] = []
    url: str | None = {
        "offset": f"{base_url}/offset/items?offset=0&limit={limit}{extra}",
        "pages": f"{base_url}/pages/items?page={first_page}&per_page={limit}{extra}",
        "cursor": f"{base_url}/cursor/items?limit={limit}{extra}",
        "cursor-has-more": f"{base_url}/cursor-has-more/items?limit={limit}{extra}",
        "next-body": f"{base_url}/next-body/items?limit={limit}{extra}",
        "link": f"{base_url}/link/items?per_page={limit}{extra}",
    }[paginator]
    page_index = 0
    while url is not None:
        if url in urls:
            raise LoopDetected([*urls, url])
        assert len(urls) < max_pages, f"more than {max_pages} pages"
        urls.append(url)
        answer = call(f"{url}&{auth_query}" if auth_query else url, headers=headers)
        assert answer.status == 200, (url, answer.status, answer.raw)
        body = answer.body
        page_index += 1
        if paginator == "offset":
            page = body["data"]["items"]
            offset = page_index * limit
            url = f"{base_url}/offset/items?offset={offset}&limit={limit}{extra}" if page else None
        elif paginator == "pages":
            page = body["results"]
            number = first_page + page_index
            more = page_index < body["total_pages"]
            url = f"{base_url}/pages/items?page={number}&per_page={limit}{extra}" if more else None
        elif paginator == "cursor":
            page = body["items"]
            cursor = body["next_cursor"]
            url = f"{base_url}/cursor/items?cursor={quote(cursor)}&limit={limit}{extra}" if cursor else None
        elif paginator == "cursor-has-more":
            page = body["records"]
            after = page[-1]["id"] if page else None
            more = body["has_more"]
            url = f"{base_url}/cursor-has-more/items?after={after}&limit={limit}{extra}" if more else None
        elif paginator == "next-body":
            page = body["items"]
            url = body["links"]["next"]
        else:
            page = body
            url = next_link(answer.headers.get("Link"))
        records.extend(page)
    return records, urls


def stats_of(base_url: str) -> dict[str, Any]:
    answer = call(f"{base_url}/stats")
    assert answer.status == 200
    return answer.body


# -- every paginator walks to exactly the dataset -----------------------------------------------

GAPPY = SimulatorConfig(total_records=250, page_size=100, non_contiguous_ids=True, **QUIET)


@pytest.fixture(scope="module")
def gappy_api() -> Iterator[str]:
    """250 records with gappy ids, pages of at most 100."""
    with run_in_thread(GAPPY) as base_url:
        yield base_url


@pytest.mark.parametrize("paginator", PAGINATORS)
def test_each_paginator_walks_to_every_record_exactly_once(gappy_api: str, paginator: str) -> None:
    records, urls = walk(gappy_api, paginator, limit=40)
    ids = [record["id"] for record in records]
    assert ids == [record_id(GAPPY, offset) for offset in range(250)]
    assert len(set(ids)) == 250
    for record in records:
        assert set(record) == {"id", "updated_at", "payload"}
        assert record["payload"] == record_text(GAPPY.seed, record["id"])
    stamps = [record["updated_at"] for record in records]
    assert stamps[0] == "2025-01-01T00:00:00Z"
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp) for stamp in stamps)
    assert all(a < b for a, b in itertools.pairwise(stamps))  # grows with the id
    # 7 pages of 40; the offset walk needs one more (empty) page to learn the end.
    assert len(urls) == (8 if paginator == "offset" else 7)


def test_the_page_size_defaults_to_and_is_capped_at_the_configured_one(gappy_api: str) -> None:
    assert len(call(f"{gappy_api}/offset/items").body["data"]["items"]) == 100
    answer = call(f"{gappy_api}/cursor/items?limit=101")
    assert answer.status == 400
    assert answer.body == {"error": "query parameter 'limit' must be between 1 and 100, got 101"}


def test_offset_and_page_number_bodies_tell_the_totals(gappy_api: str) -> None:
    offset = call(f"{gappy_api}/offset/items?offset=240&limit=40").body
    assert offset["meta"] == {"total": 250}
    assert len(offset["data"]["items"]) == 10
    assert call(f"{gappy_api}/offset/items?offset=250&limit=40").body["data"]["items"] == []
    pages = call(f"{gappy_api}/pages/items?page=7&per_page=40").body
    assert (pages["total_records"], pages["total_pages"], len(pages["results"])) == (250, 7, 10)
    assert call(f"{gappy_api}/pages/items?page=8&per_page=40").body["results"] == []


def test_link_header_lists_next_last_first_prev_and_no_next_on_the_last_page(gappy_api: str) -> None:
    first = call(f"{gappy_api}/link/items?per_page=100")
    assert first.headers["Link"] == (
        f'<{gappy_api}/link/items?per_page=100&page=2>; rel="next", '
        f'<{gappy_api}/link/items?per_page=100&page=3>; rel="last", '
        f'<{gappy_api}/link/items?per_page=100&page=1>; rel="first"'
    )
    middle = call(f"{gappy_api}/link/items?page=2&per_page=100").headers["Link"]
    assert next_link(middle) == f"{gappy_api}/link/items?page=3&per_page=100"
    assert f'<{gappy_api}/link/items?page=1&per_page=100>; rel="prev"' in middle
    last = call(f"{gappy_api}/link/items?page=3&per_page=100")
    assert len(last.body) == 50
    assert next_link(last.headers["Link"]) is None
    assert 'rel="first"' in last.headers["Link"]


def test_next_links_keep_the_query_and_change_only_the_position(gappy_api: str) -> None:
    body = call(f"{gappy_api}/next-body/items?status=all&limit=10&min_id=0").body
    assert body["links"]["next"] == f"{gappy_api}/next-body/items?status=all&limit=10&min_id=0&offset=10"


@pytest.mark.parametrize("paginator", ["pages", "link"])
def test_first_page_may_be_zero(paginator: str) -> None:
    config = SimulatorConfig(total_records=95, first_page=0, **QUIET)
    with run_in_thread(config) as base_url:
        records, urls = walk(base_url, paginator, limit=30, first_page=0)
        page_zero = call(f"{base_url}/{paginator}/items?page=0&per_page=30").body
    assert [record["id"] for record in records] == list(range(95))
    pages_asked = [parse_qs(urlsplit(url).query).get("page") for url in urls]
    first_asked = ["0"] if paginator == "pages" else None  # the Link walk starts without a page
    assert pages_asked == [first_asked, ["1"], ["2"], ["3"]]
    results = page_zero["results"] if paginator == "pages" else page_zero
    assert [record["id"] for record in results] == list(range(30))


def test_page_zero_is_refused_when_pages_start_at_one(gappy_api: str) -> None:
    answer = call(f"{gappy_api}/pages/items?page=0")
    assert (answer.status, answer.body) == (400, {"error": "query parameter 'page' must be >= 1, got 0"})


@pytest.mark.parametrize("paginator", PAGINATORS)
def test_an_empty_dataset_is_one_empty_page(paginator: str) -> None:
    with run_in_thread(SimulatorConfig(total_records=0, **QUIET)) as base_url:
        records, urls = walk(base_url, paginator)
    assert records == []
    assert len(urls) == 1


@pytest.mark.parametrize(
    ("path_and_query", "message"),
    [
        ("/offset/items?offset=-1", "query parameter 'offset' must be a non-negative integer, got '-1'"),
        ("/offset/items?limit=0", "query parameter 'limit' must be between 1 and 100, got 0"),
        ("/pages/items?per_page=abc", "query parameter 'per_page' must be a non-negative integer, got 'abc'"),
        ("/cursor/items?cursor=bm90LWEtY3Vyc29y", "query parameter 'cursor' is not a cursor this API issued"),
        ("/cursor/items?cursor=%25%25", "query parameter 'cursor' is not a cursor this API issued"),
        ("/cursor-has-more/items?after=x", "query parameter 'after' must be a non-negative integer, got 'x'"),
        ("/next-body/items?min_id=1.5", "query parameter 'min_id' must be a non-negative integer, got '1.5'"),
        (f"/link/items?page={'9' * 5000}", "query parameter 'page' must be a non-negative integer, got '"),
        (
            "/offset/items?updated_since=yesterday",
            "query parameter 'updated_since' must be an ISO-8601 timestamp such as 2025-01-01T00:00:00Z, "
            "got 'yesterday'",
        ),
        ("/pages/items?updated_since=2025-01-01T00:00:00+00:00", "(send '+' as %2B)"),
        ("/payload?startAt=0", "missing query parameter 'count'"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(
    gappy_api: str, path_and_query: str, message: str
) -> None:
    answer = call(f"{gappy_api}{path_and_query}")
    assert answer.status == 400
    assert answer.headers["Content-Type"].startswith("application/json")
    assert message in answer.body["error"]


def test_a_cursor_is_bound_to_the_seed() -> None:
    with run_in_thread(SimulatorConfig(total_records=50, seed=1, **QUIET)) as base_url:
        cursor = call(f"{base_url}/cursor/items?limit=10").body["next_cursor"]
    with run_in_thread(SimulatorConfig(total_records=50, seed=2, **QUIET)) as base_url:
        assert call(f"{base_url}/cursor/items?cursor={cursor}").status == 400


# -- auth ---------------------------------------------------------------------------------------

SECRET = "s3cret-value"
LOGIN = "acme-client"


def _basic(login: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{login}:{secret}".encode()).decode()}


# kind -> (good headers, good query, wrong headers, wrong query, the 401's challenge)
STATIC_AUTH: dict[str, tuple[dict[str, str], str, dict[str, str], str, str]] = {
    "basic": (
        _basic(LOGIN, SECRET),
        "",
        _basic(LOGIN, "nope"),
        "",
        'Basic realm="partner-api", charset="UTF-8"',
    ),
    "bearer": (
        {"Authorization": f"Bearer {SECRET}"},
        "",
        {"Authorization": "Bearer nope"},
        "",
        'Bearer realm="partner-api"',
    ),
    "api_key_header": ({"X-Partner-Key": SECRET}, "", {"X-Partner-Key": "nope"}, "", "ApiKey realm="),
    "api_key_query": ({}, f"key={SECRET}", {}, "key=nope", "ApiKey realm="),
}


@pytest.mark.parametrize("kind", sorted(STATIC_AUTH))
def test_each_static_auth_kind_accepts_good_and_rejects_missing_or_wrong_credentials(kind: str) -> None:
    good_headers, good_query, bad_headers, bad_query, challenge = STATIC_AUTH[kind]
    auth = AuthConfig(kind=kind, login=LOGIN, secret=SECRET, header="X-Partner-Key", param="key")
    with run_in_thread(SimulatorConfig(total_records=30, auth=auth, **QUIET)) as base_url:
        records, _ = walk(base_url, "link", headers=good_headers, auth_query=good_query, limit=10)
        seed_page = call(f"{base_url}/payload?startAt=0&count=5&{good_query}", headers=good_headers)
        missing = call(f"{base_url}/offset/items")
        wrong = call(f"{base_url}/offset/items?{bad_query}", headers=bad_headers)
        wrong_kind = call(f"{base_url}/offset/items", headers={"Authorization": f"Token {SECRET}"})
        unguarded = [call(f"{base_url}{path}").status for path in ("/health", "/stats")]
        stats = stats_of(base_url)
    assert [record["id"] for record in records] == list(range(30))
    assert seed_page.status == 200  # the seed's endpoint is guarded too
    for refused in (missing, wrong, wrong_kind):
        assert refused.status == 401
        assert refused.headers["WWW-Authenticate"].startswith(challenge)
        assert refused.body["error"].startswith("unauthorized: ")
        assert SECRET not in refused.raw.decode()
    assert "missing" in missing.body["error"]
    assert "wrong" in wrong.body["error"]
    assert unguarded == [200, 200]
    assert stats["by_status"] == {"200": 4, "401": 3}


@pytest.mark.parametrize("kind", ["api_key_header", "bearer", "basic"])
def test_credentials_that_are_not_utf8_are_refused_not_a_server_error(kind: str) -> None:
    with run_in_thread(SimulatorConfig(auth=AuthConfig(kind=kind), **QUIET)) as base_url:
        url = urlsplit(base_url)
        assert url.hostname is not None and url.port is not None
        with socket.create_connection((url.hostname, url.port), timeout=10) as client:
            authorization = b"Basic /w==" if kind == "basic" else b"Bearer \xff"  # b64 of 0xff
            client.sendall(
                b"GET /offset/items HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"X-API-Key: \xff\xfe\r\nAuthorization: " + authorization + b"\r\n\r\n"
            )
            status_line = client.makefile("rb").readline()
    assert status_line.startswith(b"HTTP/1.1 401 ")


def test_api_key_query_is_never_copied_into_next_links() -> None:
    auth = AuthConfig(kind="api_key_query", secret=SECRET, param="api_key")
    with run_in_thread(SimulatorConfig(total_records=30, auth=auth, **QUIET)) as base_url:
        body = call(f"{base_url}/next-body/items?limit=10&api_key={SECRET}").body
        link = call(f"{base_url}/link/items?per_page=10&api_key={SECRET}").headers["Link"]
    assert body["links"]["next"] == f"{base_url}/next-body/items?limit=10&offset=10"
    assert SECRET not in link and "api_key" not in link


@pytest.fixture()
def oauth_api() -> Iterator[tuple[str, list[float]]]:
    """OAuth2 client credentials, tokens living 60 s on a clock the test moves."""
    now = [1000.0]
    auth = AuthConfig(kind="oauth2_client_credentials", login=LOGIN, secret=SECRET, token_ttl_seconds=60)
    config = SimulatorConfig(total_records=30, auth=auth, **QUIET)
    with run_in_thread(config, clock=lambda: now[0]) as base_url:
        yield base_url, now


def token_request(base_url: str, form: str, headers: dict[str, str] | None = None) -> Answer:
    form_headers = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
    return call(f"{base_url}/oauth/token", method="POST", headers=form_headers, data=form.encode())


def new_token(base_url: str) -> str:
    answer = token_request(base_url, "grant_type=client_credentials", _basic(LOGIN, SECRET))
    assert answer.status == 200
    return answer.body["access_token"]


def test_oauth2_tokens_for_client_credentials_by_basic_or_form(oauth_api: tuple[str, list[float]]) -> None:
    base_url, _ = oauth_api
    by_basic = token_request(base_url, "grant_type=client_credentials&scope=read", _basic(LOGIN, SECRET))
    form = f"grant_type=client_credentials&client_id={LOGIN}&client_secret={SECRET}"
    by_form = token_request(base_url, form)
    for answer in (by_basic, by_form):
        assert answer.status == 200
        assert answer.headers["Cache-Control"] == "no-store"
        assert answer.body["token_type"] == "bearer"
        assert answer.body["expires_in"] == 60
    assert by_basic.body["scope"] == "read"
    assert by_basic.body["access_token"] != by_form.body["access_token"]
    for answer in (by_basic, by_form):
        token = answer.body["access_token"]
        records, _ = walk(base_url, "cursor", headers={"Authorization": f"Bearer {token}"}, limit=10)
        assert len(records) == 30
    missing = call(f"{base_url}/cursor/items")
    assert (missing.status, missing.headers["WWW-Authenticate"]) == (401, 'Bearer realm="partner-api"')
    unknown = call(f"{base_url}/cursor/items", headers={"Authorization": "Bearer made-up"})
    assert unknown.status == 401
    assert unknown.headers["WWW-Authenticate"] == 'Bearer realm="partner-api", error="invalid_token"'
    assert unknown.body == {"error": "unauthorized: expired or unknown access token"}
    stats = stats_of(base_url)
    assert (stats["token_requests"], stats["tokens_issued"]) == (2, 2)


@pytest.mark.parametrize(
    ("form", "headers", "status", "error"),
    [
        ("grant_type=client_credentials", _basic(LOGIN, "nope"), 401, "invalid_client"),
        (f"grant_type=client_credentials&client_id={LOGIN}&client_secret=nope", {}, 401, "invalid_client"),
        ("grant_type=client_credentials", {}, 401, "invalid_client"),
        ("grant_type=password", _basic(LOGIN, SECRET), 400, "unsupported_grant_type"),
        ("scope=read", _basic(LOGIN, SECRET), 400, "invalid_request"),
        (f"grant_type=client_credentials&client_id={LOGIN}", _basic(LOGIN, SECRET), 400, "invalid_request"),
    ],
)
def test_oauth2_token_endpoint_refuses_bad_requests(
    oauth_api: tuple[str, list[float]], form: str, headers: dict[str, str], status: int, error: str
) -> None:
    base_url, _ = oauth_api
    answer = token_request(base_url, form, headers)
    assert (answer.status, answer.body["error"]) == (status, error)
    assert SECRET not in answer.raw.decode()
    if status == 401:
        assert answer.headers["WWW-Authenticate"].startswith("Basic ")
    assert stats_of(base_url)["tokens_issued"] == 0


def test_oauth2_token_endpoint_wants_a_form(oauth_api: tuple[str, list[float]]) -> None:
    base_url, _ = oauth_api
    answer = post_json(f"{base_url}/oauth/token", {"grant_type": "client_credentials"})
    assert (answer.status, answer.body["error"]) == (400, "invalid_request")
    assert "x-www-form-urlencoded" in answer.body["error_description"]


def test_oauth2_tokens_expire_after_their_ttl(oauth_api: tuple[str, list[float]]) -> None:
    base_url, now = oauth_api
    bearer = {"Authorization": f"Bearer {new_token(base_url)}"}
    assert call(f"{base_url}/offset/items", headers=bearer).status == 200
    now[0] += 59.5
    assert call(f"{base_url}/offset/items", headers=bearer).status == 200
    now[0] += 0.5
    expired = call(f"{base_url}/offset/items", headers=bearer)
    assert expired.status == 401
    assert 'error="invalid_token"' in expired.headers["WWW-Authenticate"]
    # A new token works again; the admin endpoint expires it at once.
    fresh = new_token(base_url)
    assert call(f"{base_url}/offset/items", headers={"Authorization": f"Bearer {fresh}"}).status == 200
    assert post_json(f"{base_url}/admin/expire-tokens", {}).body == {"expired": 1}
    assert call(f"{base_url}/offset/items", headers={"Authorization": f"Bearer {fresh}"}).status == 401


def test_oauth2_token_ttl_zero_is_expired_at_once() -> None:
    auth = AuthConfig(kind="oauth2_client_credentials", token_ttl_seconds=0)
    with run_in_thread(SimulatorConfig(auth=auth, **QUIET)) as base_url:
        answer = token_request(base_url, "grant_type=client_credentials", _basic(auth.login, auth.secret))
        assert answer.body["expires_in"] == 0
        bearer = {"Authorization": f"Bearer {answer.body['access_token']}"}
        assert call(f"{base_url}/offset/items", headers=bearer).status == 401


def test_no_token_endpoint_without_oauth2(gappy_api: str) -> None:
    assert token_request(gappy_api, "grant_type=client_credentials").status == 404


# -- incremental filters and appends ------------------------------------------------------------


@pytest.mark.parametrize("paginator", PAGINATORS)
def test_run_two_after_an_append_requests_only_the_new_pages(paginator: str) -> None:
    with run_in_thread(SimulatorConfig(total_records=100, page_size=50, **QUIET)) as base_url:
        first_run, _ = walk(base_url, paginator, limit=50)
        watermark = first_run[-1]["updated_at"]
        appended = post_json(f"{base_url}/admin/append", {"count": 60})
        assert post_json(f"{base_url}/admin/reset-stats", {}).status == 200
        second_run, urls = walk(base_url, paginator, limit=50, query=f"updated_since={watermark}")
        stats = stats_of(base_url)
    assert [record["id"] for record in first_run] == list(range(100))
    assert appended.status == 200
    assert appended.body == {
        "appended": 60,
        "total_records": 160,
        "first_id": 100,
        "last_id": 159,
        "last_updated_at": "2025-01-01T02:39:00Z",
    }
    # updated_since is inclusive: the last record of run 1 comes again, then the 60 new ones.
    assert [record["id"] for record in second_run] == list(range(99, 160))
    assert second_run[1]["updated_at"] > watermark
    path = urlsplit(urls[0]).path
    pages = {"99-148": 1, "149-159": 1}
    if paginator == "offset":
        pages["empty"] = 1
    assert stats["pages_served"] == {path: pages}
    assert stats["by_path"] == {path: len(urls)}
    assert stats["total_records"] == 160


def test_filters_by_min_id_and_updated_since_combine(gappy_api: str) -> None:
    min_id = record_id(GAPPY, 200)
    by_id, _ = walk(gappy_api, "offset", query=f"min_id={min_id}")
    assert [record["id"] for record in by_id] == [record_id(GAPPY, offset) for offset in range(200, 250)]
    just_above, _ = walk(gappy_api, "cursor", query=f"min_id={min_id + 1}")
    assert just_above[0]["id"] == record_id(GAPPY, 201)
    # Naive timestamps are UTC; a %2B-encoded offset works.
    naive, _ = walk(gappy_api, "pages", query="updated_since=2025-01-01T04:00:00")
    assert naive[0]["updated_at"] == "2025-01-01T04:00:00Z" and len(naive) == 10
    shifted, _ = walk(gappy_api, "next-body", query="updated_since=2025-01-01T05:00:00%2B01:00")
    assert len(shifted) == 10
    query = f"updated_since=2025-01-01T04:00:00Z&min_id={record_id(GAPPY, 245)}"
    both, _ = walk(gappy_api, "link", query=query)
    assert [record["id"] for record in both] == [record_id(GAPPY, offset) for offset in range(245, 250)]
    totals = call(f"{gappy_api}/offset/items?min_id={min_id}").body["meta"]
    assert totals == {"total": 50}
    none_left, _ = walk(gappy_api, "cursor-has-more", query="updated_since=2030-01-01T00:00:00Z")
    assert none_left == []


def test_filter_expressions_for_filter_templates(gappy_api: str) -> None:
    by_time, _ = walk(gappy_api, "offset", query=f"filter={quote('updated_at>=2025-01-01T04:00:00Z')}")
    stamps = [record["updated_at"] for record in by_time]
    assert stamps[:2] == ["2025-01-01T04:00:00Z", "2025-01-01T04:01:00Z"]
    assert len(stamps) == 10
    # Repeated and mixed with the plain parameters, the tightest bound wins (all ANDed).
    lowest = record_id(GAPPY, 245)
    query = f"filter={quote(f'id>={lowest}')}&filter={quote('updated_at>=2025-01-01T04:00:00Z')}&min_id=0"
    both, _ = walk(gappy_api, "cursor", query=query)
    assert [record["id"] for record in both] == [record_id(GAPPY, offset) for offset in range(245, 250)]
    for bad in ("updated_at>yesterday", "name>=x", "id>=-1", "updated_at>=soon"):
        answer = call(f"{gappy_api}/cursor/items?filter={quote(bad)}")
        assert answer.status == 400
        assert answer.body["error"].startswith("query parameter 'filter' must be ")


@pytest.mark.parametrize(
    "payload",
    [{}, {"count": 0}, {"count": -3}, {"count": "5"}, {"count": True}, {"count": 10**7}, [5], "text"],
)
def test_append_refuses_bad_counts(gappy_api: str, payload: Any) -> None:
    answer = post_json(f"{gappy_api}/admin/append", payload)
    assert answer.status == 400
    assert '"count"' in answer.body["error"] or "JSON" in answer.body["error"]
    assert stats_of(gappy_api)["total_records"] == 250


def test_append_refuses_a_body_that_is_not_json(gappy_api: str) -> None:
    answer = call(f"{gappy_api}/admin/append", method="POST", data=b"count=5")
    assert (answer.status, answer.body) == (400, {"error": 'expected a JSON body such as {"count": 10}'})


def test_the_seed_endpoint_serves_appended_records_too() -> None:
    with run_in_thread(SimulatorConfig(total_records=10, **QUIET)) as base_url:
        post_json(f"{base_url}/admin/append", {"count": 5})
        body = call(f"{base_url}/payload?startAt=0&count=100").body
    assert body["totalRecords"] == 15
    assert [record["id"] for record in body["payload"]] == list(range(15))
    assert set(body["payload"][0]) == {"id", "payload"}  # the seed's shape, unchanged


# -- misbehaviour -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("paginator", "pages_before_repeat"),
    [("cursor", 3), ("cursor-has-more", 4), ("next-body", 3), ("link", 3)],
)
def test_a_looping_api_repeats_a_cursor_or_link_after_k(paginator: str, pages_before_repeat: int) -> None:
    config = SimulatorConfig(total_records=100, misbehaviour=Misbehaviour(loop_after_pages=3), **QUIET)
    with run_in_thread(config) as base_url, pytest.raises(LoopDetected) as excinfo:
        walk(base_url, paginator, limit=10)
    urls = excinfo.value.urls
    # Page 3 points back at itself (has-more: the page after page 3 is page 3 again).
    assert len(urls) == pages_before_repeat + 1
    assert urls[-1] == urls[-2]


@pytest.mark.parametrize("paginator", ["next-body", "link"])
def test_a_foreign_next_link_points_at_another_origin(paginator: str) -> None:
    foreign = "http://127.0.0.2:9/elsewhere"
    config = SimulatorConfig(total_records=30, misbehaviour=Misbehaviour(foreign_next_url=foreign), **QUIET)
    with run_in_thread(config) as base_url:
        if paginator == "next-body":
            target = call(f"{base_url}/next-body/items?limit=10").body["links"]["next"]
        else:
            target = next_link(call(f"{base_url}/link/items?per_page=10").headers["Link"])
    assert target is not None
    assert target.startswith("http://127.0.0.2:9/")
    assert urlsplit(target).path == f"/{paginator}/items"


def test_a_total_that_is_not_a_number() -> None:
    config = SimulatorConfig(total_records=30, misbehaviour=Misbehaviour(total_not_a_number=True), **QUIET)
    with run_in_thread(config) as base_url:
        offset = call(f"{base_url}/offset/items").body
        pages = call(f"{base_url}/pages/items").body
        seed = call(f"{base_url}/payload?startAt=0&count=10").body
    assert offset["meta"] == {"total": "lots"}
    assert len(offset["data"]["items"]) == 30
    assert (pages["total_records"], pages["total_pages"]) == ("lots", "lots")
    assert seed["totalRecords"] == "lots"


def test_a_redirect_to_another_origin_keeps_path_and_query_credentials_included() -> None:
    with recording_server(body={"items": []}) as recorder:
        auth = AuthConfig(kind="api_key_query", secret=SECRET)
        misbehaviour = Misbehaviour(redirect_to=f"{recorder.base_url}/ignored-path")
        config = SimulatorConfig(total_records=30, auth=auth, misbehaviour=misbehaviour, **QUIET)
        with run_in_thread(config) as base_url:
            answers = [
                call(f"{base_url}{path}?limit=10&api_key={SECRET}")
                for path in ("/cursor/items", "/payload", "/link/items")
            ]
            stats = stats_of(base_url)
            # A client that follows it blindly hands the key to the other origin.
            with urllib.request.urlopen(f"{base_url}/cursor/items?api_key={SECRET}", timeout=10) as followed:
                assert json.loads(followed.read()) == {"items": []}
        recorded = recorder.requests
    for answer, path in zip(answers, ("/cursor/items", "/payload", "/link/items"), strict=True):
        assert answer.status == 302
        assert answer.headers["Location"] == f"{recorder.base_url}{path}?limit=10&api_key={SECRET}"
    assert stats["by_status"] == {"302": 3}
    assert [(request.path, request.carries(SECRET)) for request in recorded] == [("/cursor/items", True)]


@pytest.mark.parametrize("paginator", ["offset", "cursor", "cursor-has-more", "next-body", "link"])
def test_an_endless_api_is_stopped_only_by_the_page_cap(paginator: str) -> None:
    config = SimulatorConfig(total_records=20, misbehaviour=Misbehaviour(endless=True), **QUIET)
    with run_in_thread(config) as base_url:
        with pytest.raises(AssertionError, match="more than 12 pages"):
            walk(base_url, paginator, limit=10, max_pages=12)
        offset_total = call(f"{base_url}/offset/items?offset=500").body
    # Records keep coming past the configured 20 (ids still increasing), the total stays 20.
    assert offset_total["meta"] == {"total": 20}
    assert [record["id"] for record in offset_total["data"]["items"]][:2] == [500, 501]


# -- faults apply to every endpoint -------------------------------------------------------------

ENDPOINT_URLS = {
    "offset": "/offset/items?limit=10",
    "pages": "/pages/items?per_page=10",
    "cursor": "/cursor/items?limit=10",
    "cursor-has-more": "/cursor-has-more/items?limit=10",
    "next-body": "/next-body/items?limit=10",
    "link": "/link/items?per_page=10",
}


@pytest.mark.parametrize("paginator", PAGINATORS)
def test_faults_apply_to_every_paginated_endpoint(paginator: str) -> None:
    path = ENDPOINT_URLS[paginator]
    with run_in_thread(SimulatorConfig(latency_ms=0, error_rate=1.0, status_5xx_codes=(503,))) as base_url:
        failed = call(f"{base_url}{path}")
    assert (failed.status, failed.body) == (503, {"error": "simulated failure"})
    with run_in_thread(SimulatorConfig(latency_ms=0, error_rate=0, rate_limit_rate=1.0)) as base_url:
        limited = call(f"{base_url}{path}")
    assert (limited.status, limited.headers["Retry-After"]) == (429, "1")
    with run_in_thread(SimulatorConfig(latency_ms=0, error_rate=0, truncate_rate=1.0)) as base_url:
        truncated = call(f"{base_url}{path}")
        stats = stats_of(base_url)
    assert truncated.status == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(truncated.raw)
    assert stats["faults_injected"]["truncate"] == 1
    assert stats["pages_served"] == {}  # a cut-off page is not a page served


def test_fault_patterns_are_reproducible_per_seed_on_the_new_endpoints() -> None:
    def pattern(seed: int) -> list[int]:
        config = SimulatorConfig(total_records=250, latency_ms=0, error_rate=0.3, seed=seed)
        with run_in_thread(config) as base_url:
            return [
                call(f"{base_url}/offset/items?offset={offset}&limit=10").status
                for offset in range(0, 250, 10)
                for _ in range(2)
            ]

    first = pattern(3)
    assert set(first) == {200, 500}
    assert pattern(3) == first
    assert pattern(4) != first


def test_poison_pages_lack_ids_on_the_new_endpoints_too() -> None:
    config = SimulatorConfig(total_records=30, page_size=10, poison_pages={1}, **QUIET)
    with run_in_thread(config) as base_url:
        items = call(f"{base_url}/offset/items?limit=10&offset=10").body["data"]["items"]
    assert all("id" not in item and "updated_at" in item for item in items)


# -- stats --------------------------------------------------------------------------------------


def test_stats_count_requests_per_endpoint_and_pages_by_ids() -> None:
    auth = AuthConfig(kind="bearer", secret=SECRET)
    with run_in_thread(SimulatorConfig(total_records=25, auth=auth, **QUIET)) as base_url:
        bearer = {"Authorization": f"Bearer {SECRET}"}
        walk(base_url, "cursor", limit=10, headers=bearer)
        call(f"{base_url}/cursor/items?limit=10", headers=bearer)
        call(f"{base_url}/pages/items?page=9", headers=bearer)
        call(f"{base_url}/pages/items", headers={})
        call(f"{base_url}/pages/items?page=x", headers=bearer)
        call(f"{base_url}/health")
        stats = stats_of(base_url)
        post_json(f"{base_url}/admin/reset-stats", {})
        reset = stats_of(base_url)
    assert stats["requests"] == 7
    assert stats["by_path"] == {"/cursor/items": 4, "/pages/items": 3}
    assert stats["pages_served"] == {
        "/cursor/items": {"0-9": 2, "10-19": 1, "20-24": 1},
        "/pages/items": {"empty": 1},
    }
    assert stats["by_status"] == {"200": 5, "400": 1, "401": 1}
    assert stats["total_records"] == 25
    assert reset["requests"] == 0 and reset["by_path"] == {} and reset["pages_served"] == {}
    assert reset["total_records"] == 25


# -- the recording server -----------------------------------------------------------------------


def test_recording_server_records_every_request_and_answers_the_configured_json() -> None:
    with recording_server(body=[], status=200) as recorder:
        get = call(
            f"{recorder.base_url}/v1/items?page=2&api_key=k%2B1",
            headers={"Authorization": "Bearer tok", "X-API-Key": "abc"},
        )
        post = call(f"{recorder.base_url}/oauth/token", method="POST", data=b"client_secret=shh")
        recorded = recorder.requests
    assert (get.status, get.body, post.body) == (200, [], [])
    first, second = recorded
    assert (first.method, first.path, first.query_string) == ("GET", "/v1/items", "page=2&api_key=k%2B1")
    assert first.query.getall("api_key") == ["k+1"]
    assert first.headers["authorization"] == "Bearer tok"
    assert "x-api-key" in first.headers
    assert first.carries("k+1") and first.carries("tok") and first.carries("abc")
    assert not first.carries("shh")
    assert (second.method, second.body) == ("POST", b"client_secret=shh")
    assert second.carries("shh")
    assert "Authorization" not in second.headers


def test_recording_server_default_answer_is_an_empty_object() -> None:
    with recording_server() as recorder:
        answer = call(f"{recorder.base_url}/anything", method="DELETE")
    assert (answer.status, answer.body) == (200, {})


# -- command line -------------------------------------------------------------------------------


def test_parse_args_auth_and_misbehaviour_flags() -> None:
    assert parse_args([]).auth == AuthConfig()
    assert parse_args([]).misbehaviour == Misbehaviour()
    assert parse_args([]).first_page == 1
    config = parse_args(
        [
            "--first-page=0",
            "--auth=oauth2_client_credentials",
            "--auth-login=client",
            "--auth-secret=shh",
            "--auth-header=X-Key",
            "--auth-param=key",
            "--token-ttl-seconds=5",
            "--loop-after-pages=4",
            "--foreign-next-url=http://127.0.0.1:9999",
            "--total-not-a-number",
            "--redirect-to=https://example.test",
            "--endless",
        ]
    )
    assert config.first_page == 0
    assert config.auth == AuthConfig(
        kind="oauth2_client_credentials",
        login="client",
        secret="shh",
        header="X-Key",
        param="key",
        token_ttl_seconds=5,
    )
    assert config.misbehaviour == Misbehaviour(
        loop_after_pages=4,
        foreign_next_url="http://127.0.0.1:9999",
        total_not_a_number=True,
        redirect_to="https://example.test",
        endless=True,
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--first-page", "2"],
        ["--auth", "digest"],
        ["--auth-secret", ""],
        ["--auth-login", "a:b"],
        ["--auth-header", "X Key"],
        ["--token-ttl-seconds", "-1"],
        ["--loop-after-pages", "x"],
        ["--foreign-next-url", "/relative"],
        ["--redirect-to", "ftp://example.test"],
    ],
)
def test_parse_args_rejects_bad_source_flags(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        parse_args(argv)
    assert excinfo.value.code == 2


def test_help_documents_the_endpoints_and_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = capsys.readouterr().out
    for needle in (*(f"/{name}/items" for name in PAGINATORS), "--auth", "--endless", "/admin/append"):
        assert needle in text
