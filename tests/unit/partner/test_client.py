"""Unit tests of api_poller.partner.client and api_poller.core.errors.

Pure functions are tested directly; the HTTP client (``with_retries``, ``fetch_page``,
``fetch_metadata``) runs against real local servers: the project's simulator, and a tiny aiohttp
app for answers the simulator never gives (non-JSON, slow responses).
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import parse_qs, parse_qsl, urlsplit

import aiohttp
import pytest
from aiohttp import web
from api_poller_dev.simulator import SimulatorConfig, run_in_thread

from api_poller.core.errors import (
    FatalError,
    InvalidJobRequest,
    InvalidMetadata,
    PollerError,
    RetriableError,
    classify_exception,
    error_for_status,
)
from api_poller.core.job_request import validate_job_url
from api_poller.core.planning import ApiMetadata, PageTask
from api_poller.partner.client import (
    ClientOptions,
    FetchedPage,
    RetryPolicy,
    check_page_document,
    fetch_metadata,
    fetch_page,
    page_url,
    with_retries,
)
from tests.helpers import serve_in_thread

T = TypeVar("T")

FAST = RetryPolicy(attempts=6, initial_seconds=0.001, max_seconds=0.01)
TIMEOUT = ClientOptions(timeout=5.0)
PAGE = PageTask(page=2, start_at=200, count=100)


# --- helpers ----------------------------------------------------------------------------------


def run_with_session(body: Callable[[aiohttp.ClientSession], Awaitable[T]], **session_kwargs: Any) -> T:
    """Run ``body(session)`` in a fresh event loop with a fresh aiohttp session."""

    async def main() -> T:
        async with aiohttp.ClientSession(**session_kwargs) as session:
            return await body(session)

    return asyncio.run(main())


def simulator_stats(base_url: str) -> dict[str, Any]:
    async def read(session: aiohttp.ClientSession) -> dict[str, Any]:
        async with session.get(f"{base_url}/stats") as response:
            return await response.json()

    return run_with_session(read)


def request_counter() -> tuple[aiohttp.TraceConfig, list[str]]:
    """A client trace hook recording the URL of every request the session sends."""
    sent: list[str] = []

    async def on_start(session: Any, context: Any, params: aiohttp.TraceRequestStartParams) -> None:
        sent.append(str(params.url))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    return trace, sent


@pytest.fixture(scope="module")
def odd_api() -> Iterator[tuple[str, dict[str, int]]]:
    """A server with the answers the simulator never gives; also counts hits per path."""
    hits: dict[str, int] = {}

    @web.middleware
    async def count_hits(request: web.Request, handler: Any) -> web.StreamResponse:
        hits[request.path] = hits.get(request.path, 0) + 1
        return await handler(request)

    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html>maintenance</html>", content_type="text/html")

    async def json_list(request: web.Request) -> web.Response:
        return web.json_response([1, 2, 3])

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.json_response({"payload": []})

    app = web.Application(middlewares=[count_hits])
    app.router.add_get("/html", html)
    app.router.add_get("/list", json_list)
    app.router.add_get("/slow", slow)
    with serve_in_thread(app) as base_url:
        yield base_url, hits


@pytest.fixture(scope="module")
def steady_api() -> Iterator[str]:
    """250 records in pages of 100, no latency, no errors."""
    config = SimulatorConfig(total_records=250, page_size=100, latency_ms=0, error_rate=0)
    with run_in_thread(config) as base_url:
        yield base_url


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/payload"


# --- validate_job_url -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (None, "url is missing"),
        ("", "url is missing"),
        (42, "must be a string, got int"),
        (b"https://example.com/payload", "must be a string, got bytes"),
        (["https://example.com/payload"], "must be a string, got list"),
        ("ftp://example.com/payload", "must use http or https, not 'ftp'"),
        ("file:///etc/passwd", "must use http or https, not 'file'"),
        ("no-scheme.example/payload", "must use http or https, not 'no scheme'"),
        ("http://", "has no host"),
        ("https:///payload", "has no host"),
    ],
    ids=[
        "none",
        "empty",
        "int",
        "bytes",
        "list",
        "ftp",
        "file",
        "no-scheme",
        "http-no-host",
        "https-no-host",
    ],
)
def test_validate_job_url_rejects_saying_what_is_wrong(url: Any, message: str) -> None:
    with pytest.raises(InvalidJobRequest, match=message):
        validate_job_url(url)


def test_validate_job_url_rejects_whitespace_only() -> None:
    with pytest.raises(InvalidJobRequest):
        validate_job_url("   ")


def test_invalid_job_request_is_fatal() -> None:
    with pytest.raises(FatalError):
        validate_job_url("ftp://example.com/payload")


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/payload",
        "https://example.com/payload",
        "https://api.partner.example:8443/v1/payload?key=abc",
        "http://127.0.0.1:8080/payload",
        "HTTPS://Example.com/payload",
    ],
)
def test_validate_job_url_accepts_http_and_https(url: str) -> None:
    assert validate_job_url(url) == url


@pytest.mark.parametrize("padding", [" ", "\t", "\n", "  \r\n"])
def test_validate_job_url_strips_whitespace(padding: str) -> None:
    assert validate_job_url(f"{padding}https://example.com/payload{padding}") == "https://example.com/payload"


# --- page_url ---------------------------------------------------------------------------------


def test_page_url_adds_start_at_and_count() -> None:
    assert page_url("http://h/payload", 100, 50) == "http://h/payload?startAt=100&count=50"


def test_page_url_replaces_existing_start_at_and_count() -> None:
    url = page_url("http://h/payload?startAt=5&count=7&startAt=9", 100, 50)
    assert parse_qs(urlsplit(url).query) == {"startAt": ["100"], "count": ["50"]}


def test_page_url_keeps_other_query_params_in_order() -> None:
    url = page_url("https://h:8443/v1/payload?key=abc&region=eu&tag=a&tag=b", 0, 1)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "h:8443", "/v1/payload")
    assert parse_qsl(parts.query) == [
        ("key", "abc"),
        ("region", "eu"),
        ("tag", "a"),
        ("tag", "b"),
        ("startAt", "0"),
        ("count", "1"),
    ]


def test_page_url_keeps_encoded_values_meaning() -> None:
    url = page_url("http://h/payload?q=a%2Fb%26c&name=x+y", 0, 10)
    assert parse_qs(urlsplit(url).query)["q"] == ["a/b&c"]
    assert parse_qs(urlsplit(url).query)["name"] == ["x y"]


def test_page_url_keeps_params_with_blank_values() -> None:
    url = page_url("http://h/payload?flag=&key=abc", 0, 10)
    assert ("flag", "") in parse_qsl(urlsplit(url).query, keep_blank_values=True)


# --- RetryPolicy.delay ------------------------------------------------------------------------


@pytest.mark.parametrize("retry", range(1, 9))
def test_delay_is_between_half_base_and_base(retry: int) -> None:
    policy = RetryPolicy(initial_seconds=1.0, backoff_rate=2.0, max_seconds=1000.0)
    base = 2.0 ** (retry - 1)
    for seed in range(50):
        assert base / 2 <= policy.delay(retry, random.Random(seed)) <= base


def test_delay_grows_with_backoff_rate_two() -> None:
    policy = RetryPolicy(initial_seconds=0.5, backoff_rate=2.0, max_seconds=1000.0)
    rng = random.Random(7)
    delays = [policy.delay(retry, rng) for retry in range(1, 11)]
    # Each retry's floor (base/2) is the previous retry's ceiling, so delays never shrink.
    assert delays == sorted(delays)
    assert delays[-1] >= 0.5 * 2**9 / 2


@pytest.mark.parametrize("retry", [7, 8, 20, 60])
def test_delay_is_capped_by_max_seconds(retry: int) -> None:
    policy = RetryPolicy(initial_seconds=1.0, backoff_rate=2.0, max_seconds=60.0)
    for seed in range(50):
        assert 30.0 <= policy.delay(retry, random.Random(seed)) <= 60.0


def test_delay_is_capped_for_huge_retry_numbers() -> None:
    assert RetryPolicy(max_seconds=60.0).delay(2000, random.Random(0)) <= 60.0


def test_delay_jitter_spreads_over_upper_half() -> None:
    policy = RetryPolicy(initial_seconds=8.0, backoff_rate=2.0, max_seconds=60.0)
    rng = random.Random(1234)
    samples = [policy.delay(1, rng) for _ in range(500)]
    assert min(samples) >= 4.0 and max(samples) <= 8.0
    assert min(samples) < 4.2 and max(samples) > 7.8
    assert len(set(samples)) > 400


def test_delay_is_reproducible_with_same_seed() -> None:
    policy = RetryPolicy()
    assert policy.delay(3, random.Random(99)) == policy.delay(3, random.Random(99))


def test_retry_policy_defaults_match_seed() -> None:
    assert RetryPolicy() == RetryPolicy(attempts=6, initial_seconds=1.0, backoff_rate=2.0, max_seconds=60.0)


# --- error_for_status -------------------------------------------------------------------------

URL = "http://partner.example/payload?startAt=0&count=100"


@pytest.mark.parametrize("status", [408, 425, 429, 500, 501, 502, 503, 504, 599])
def test_error_for_status_retriable(status: int) -> None:
    error = error_for_status(status, URL)
    assert isinstance(error, RetriableError)
    assert str(status) in str(error) and URL in str(error)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 410, 422])
def test_error_for_status_fatal(status: int) -> None:
    error = error_for_status(status, URL)
    assert isinstance(error, FatalError)
    assert str(status) in str(error) and URL in str(error)


def test_error_for_status_includes_truncated_body_excerpt() -> None:
    error = error_for_status(503, URL, "x" * 500)
    assert str(error) == f"HTTP 503 from {URL}: {'x' * 200}"


# --- classify_exception -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        asyncio.TimeoutError(),  # noqa: UP041 - the name asyncio code raises (same class on 3.11+)
        TimeoutError(),
        aiohttp.ServerTimeoutError("read timeout"),
        aiohttp.ClientConnectionError("refused"),
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientPayloadError("truncated"),
        ConnectionResetError("reset by peer"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_classify_exception_retriable(exc: BaseException) -> None:
    error = classify_exception(exc, URL)
    assert isinstance(error, RetriableError)
    assert URL in str(error)


@pytest.mark.parametrize(
    "exc",
    [ValueError("bad"), KeyError("k"), RuntimeError("boom"), aiohttp.InvalidURL("nope")],
    ids=lambda exc: type(exc).__name__,
)
def test_classify_exception_fatal(exc: BaseException) -> None:
    error = classify_exception(exc, URL)
    assert isinstance(error, FatalError)
    assert URL in str(error)


@pytest.mark.parametrize(
    "exc", [RetriableError("r"), FatalError("f"), InvalidMetadata("m")], ids=lambda e: type(e).__name__
)
def test_classify_exception_passes_poller_errors_through(exc: PollerError) -> None:
    assert classify_exception(exc, URL) is exc


# --- check_page_document ----------------------------------------------------------------------


def test_check_page_document_returns_count_when_complete() -> None:
    document = {"totalRecords": 250, "payload": [{"id": i} for i in range(200, 300)]}
    assert check_page_document(document, PAGE) == 100


@pytest.mark.parametrize(
    ("served", "expected"), [(50, "returned 50 records"), (0, "returned 0"), (101, "101")]
)
def test_check_page_document_wrong_count_is_retriable(served: int, expected: str) -> None:
    with pytest.raises(RetriableError, match=expected) as info:
        check_page_document({"payload": [{}] * served}, PAGE)
    assert "expected 100" in str(info.value) and PAGE.page_id in str(info.value)


@pytest.mark.parametrize(
    "document",
    [{}, {"payload": None}, {"payload": {"id": 1}}, {"payload": "[]"}, [], "payload", None, 3],
    ids=["no-payload", "null-payload", "dict-payload", "str-payload", "list", "str", "null", "int"],
)
def test_check_page_document_malformed_is_retriable(document: Any) -> None:
    with pytest.raises(RetriableError, match=f"{PAGE.page_id} response has no 'payload' list"):
        check_page_document(document, PAGE)


# --- with_retries (no network) ----------------------------------------------------------------


def flaky_call(failures: list[PollerError], result: str = "ok") -> tuple[Callable[[], Awaitable[str]], list]:
    calls: list[int] = []

    async def call() -> str:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return result

    return call, calls


def test_with_retries_returns_result_and_attempt_count() -> None:
    call, calls = flaky_call([RetriableError("a"), RetriableError("b")])
    seen: list[tuple[int, str]] = []
    result = asyncio.run(with_retries(call, FAST, lambda n, e: seen.append((n, str(e)))))
    assert result == ("ok", 3)
    assert seen == [(1, "a"), (2, "b")]
    assert len(calls) == 3


def test_with_retries_does_not_retry_fatal() -> None:
    call, calls = flaky_call([FatalError("nope")])
    with pytest.raises(FatalError, match="nope"):
        asyncio.run(with_retries(call, FAST))
    assert len(calls) == 1


def test_with_retries_single_attempt_gives_up_at_once() -> None:
    call, calls = flaky_call([RetriableError("down")])
    with pytest.raises(RetriableError, match="gave up after 1 attempts: down"):
        asyncio.run(with_retries(call, RetryPolicy(attempts=1, initial_seconds=0.001)))
    assert len(calls) == 1


# --- against the simulator --------------------------------------------------------------------


def test_fetch_page_returns_raw_body_and_record_count(steady_api: str) -> None:
    middle = PageTask(page=1, start_at=100, count=100)
    page = run_with_session(lambda s: fetch_page(s, f"{steady_api}/payload", middle, FAST, TIMEOUT))
    assert page.record_count == 100 and page.attempts == 1
    assert [record["id"] for record in json.loads(page.body)["payload"]] == list(range(100, 200))


def test_fetch_metadata_reads_totals(steady_api: str) -> None:
    metadata = run_with_session(lambda s: fetch_metadata(s, f"{steady_api}/payload", FAST, TIMEOUT))
    assert metadata == ApiMetadata(total_records=250, max_records_per_page=100)


def test_fetch_metadata_keeps_other_query_params(steady_api: str) -> None:
    trace, sent = request_counter()
    url = f"{steady_api}/payload?key=abc&startAt=999"
    run_with_session(lambda s: fetch_metadata(s, url, FAST, TIMEOUT), trace_configs=[trace])
    assert [parse_qsl(urlsplit(u).query) for u in sent] == [
        [("key", "abc"), ("startAt", "0"), ("count", "1")]
    ]


def test_fetch_pages_recover_from_half_failing_api() -> None:
    # The simulator's failures are a pure function of the seed: with seed 14, 8 of the 10 pages
    # fail at least once and none fails more than 3 times in a row.
    config = SimulatorConfig(total_records=1000, page_size=100, latency_ms=0, error_rate=0.5, seed=14)
    pages = [PageTask(page=i, start_at=i * 100, count=100) for i in range(10)]
    with run_in_thread(config) as base_url:

        async def fetch_all(session: aiohttp.ClientSession) -> list[FetchedPage]:
            return await asyncio.gather(
                *(fetch_page(session, f"{base_url}/payload", p, FAST, TIMEOUT) for p in pages)
            )

        fetched = run_with_session(fetch_all)
        stats = simulator_stats(base_url)
    assert [p.record_count for p in fetched] == [100] * 10
    assert any(p.attempts > 1 for p in fetched)
    assert sum(p.attempts for p in fetched) == stats["requests"]
    assert sum(p.attempts - 1 for p in fetched) == stats["errors_injected"]


def test_fetch_page_gives_up_after_policy_attempts() -> None:
    config = SimulatorConfig(total_records=250, page_size=100, latency_ms=0, error_rate=1.0)
    policy = RetryPolicy(attempts=3, initial_seconds=0.001)
    retries: list[int] = []
    with run_in_thread(config) as base_url:
        with pytest.raises(RetriableError, match="gave up after 3 attempts") as info:
            run_with_session(
                lambda s: fetch_page(
                    s, f"{base_url}/payload", PAGE, policy, TIMEOUT, lambda n, e: retries.append(n)
                )
            )
        stats = simulator_stats(base_url)
    assert "HTTP 500" in str(info.value)
    assert retries == [1, 2]
    assert stats["requests"] == 3 and stats["by_status"] == {"500": 3}


def test_fetch_page_http_400_is_fatal_and_not_retried() -> None:
    config = SimulatorConfig(total_records=250, page_size=100, latency_ms=0, error_rate=0)
    bad_page = PageTask(page=0, start_at=-1, count=100)  # the simulator answers 400 for startAt=-1
    with run_in_thread(config) as base_url:
        with pytest.raises(FatalError, match="HTTP 400") as info:
            run_with_session(lambda s: fetch_page(s, f"{base_url}/payload", bad_page, FAST, TIMEOUT))
        stats = simulator_stats(base_url)
    assert "startAt" in str(info.value)  # the API's error body is kept in the message
    assert stats["requests"] == 1 and stats["by_status"] == {"400": 1}


def test_fetch_page_http_404_is_fatal_and_not_retried(steady_api: str) -> None:
    trace, sent = request_counter()
    with pytest.raises(FatalError, match="HTTP 404"):
        run_with_session(
            lambda s: fetch_page(s, f"{steady_api}/no-such-path", PAGE, FAST, TIMEOUT), trace_configs=[trace]
        )
    assert len(sent) == 1


def test_fetch_page_short_page_is_retried_then_given_up(steady_api: str) -> None:
    past_the_end = PageTask(page=2, start_at=200, count=100)  # only 50 records exist there
    trace, sent = request_counter()
    policy = RetryPolicy(attempts=2, initial_seconds=0.001)
    with pytest.raises(
        RetriableError, match=r"gave up after 2 attempts: .*returned 50 records, expected 100"
    ):
        run_with_session(
            lambda s: fetch_page(s, f"{steady_api}/payload", past_the_end, policy, TIMEOUT),
            trace_configs=[trace],
        )
    assert len(sent) == 2


# --- against a tiny aiohttp app ---------------------------------------------------------------


def test_non_json_200_is_retriable(odd_api: tuple[str, dict[str, int]]) -> None:
    base_url, hits = odd_api
    before = hits.get("/html", 0)
    policy = RetryPolicy(attempts=2, initial_seconds=0.001)
    with pytest.raises(RetriableError, match=r"is not JSON.*maintenance"):
        run_with_session(lambda s: fetch_page(s, f"{base_url}/html", PAGE, policy, TIMEOUT))
    assert hits["/html"] - before == 2


def test_fetch_metadata_non_object_json_is_fatal(odd_api: tuple[str, dict[str, int]]) -> None:
    base_url, hits = odd_api
    before = hits.get("/list", 0)
    with pytest.raises(InvalidMetadata, match="JSON object"):
        run_with_session(lambda s: fetch_metadata(s, f"{base_url}/list", FAST, TIMEOUT))
    assert hits["/list"] - before == 1


def test_slow_response_times_out_as_retriable(odd_api: tuple[str, dict[str, int]]) -> None:
    base_url, _ = odd_api
    policy = RetryPolicy(attempts=2, initial_seconds=0.001)
    with pytest.raises(RetriableError, match="gave up after 2 attempts: timed out"):
        run_with_session(
            lambda s: fetch_page(s, f"{base_url}/slow", PAGE, policy, ClientOptions(timeout=0.05))
        )


def test_connection_refused_is_retriable() -> None:
    policy = RetryPolicy(attempts=2, initial_seconds=0.001)
    with pytest.raises(RetriableError, match=r"gave up after 2 attempts: connection to .* failed"):
        run_with_session(lambda s: fetch_page(s, closed_port_url(), PAGE, policy, TIMEOUT))
