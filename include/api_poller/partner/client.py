"""Async client of the partner API: metadata and pages, with retries and backoff."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
import msgspec

from api_poller.core.byte_budget import PageHold
from api_poller.core.errors import (
    FatalError,
    PollerError,
    RetriableError,
    classify_exception,
    error_for_status,
)
from api_poller.core.json_body import check_utf8, load_json
from api_poller.core.planning import ApiMetadata, PageTask, parse_metadata


def page_url(url: str, start_at: int, count: int) -> str:
    """The URL with ``startAt``/``count`` set, keeping any other query parameters."""
    parts = urlsplit(url)
    query = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ("startAt", "count")
    ]
    query += [("startAt", str(start_at)), ("count", str(count))]
    return urlunsplit(parts._replace(query=urlencode(query)))


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    initial_seconds: float = 1.0
    backoff_rate: float = 2.0
    max_seconds: float = 60.0
    retry_after_max_seconds: float = 300.0

    def delay(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry ``retry_number`` (1-based): exponential, with jitter.

        Half the delay is fixed and half random, so many pages failing together do not all
        come back at the same instant.
        """
        try:
            base = min(self.max_seconds, self.initial_seconds * self.backoff_rate ** (retry_number - 1))
        except OverflowError:  # a huge retry number: the cap applies
            base = self.max_seconds
        return base / 2 + (rng or random).uniform(0, base / 2)

    def wait_before(self, retry_number: int, error: RetriableError) -> float:
        """The backoff delay, or longer when the server asked for it (Retry-After)."""
        delay = self.delay(retry_number)
        if error.retry_after is not None:
            delay = max(delay, min(error.retry_after, self.retry_after_max_seconds))
        return delay


@dataclass(frozen=True)
class FetchedPage:
    body: bytes | bytearray
    record_count: int
    attempts: int


RetryCallback = Callable[[int, PollerError], None]
Result = TypeVar("Result")


@dataclass(frozen=True)
class ClientOptions:
    """How every request is made: time limit, size limit, extra headers (credentials), and
    whether redirects are followed (never with credentials: they could lead to another host)."""

    timeout: float = 30.0
    max_response_bytes: int = 64 * 1024 * 1024
    headers: dict[str, str] = field(default_factory=dict)
    follow_redirects: bool = True


def declared_size(response: aiohttp.ClientResponse) -> int | None:
    """The body's size as the headers tell it; None when unknown (no Content-Length, or a
    compressed body: decompressed, it can be larger)."""
    if response.headers.get("Content-Encoding", "identity") != "identity":
        return None
    return response.content_length


async def read_limited(
    response: aiohttp.ClientResponse, url: str, limit: int, hold: PageHold | None = None
) -> bytearray:
    """The response body, refused (FatalError) once it passes ``limit`` bytes.

    With ``hold``, the body's size is reserved from the task's byte budget before it is read
    (waiting for room; see ``core.byte_budget`` for a size the headers do not tell): the caller
    releases it once the page is saved.
    """
    declared = response.content_length
    if declared is not None and declared > limit:
        raise FatalError(f"response from {url} is {declared} bytes, above the limit of {limit}")
    expected = declared_size(response)
    if hold is not None:
        await hold.reserve(expected)
    # One buffer, filled in place (no joined copy of the chunks at the end); of the declared size
    # when it is known, so it never moves while it grows.
    body = bytearray(expected or 0)
    filled = 0
    async for chunk in response.content.iter_chunked(1 << 16):
        end = filled + len(chunk)
        if end > limit:
            raise FatalError(f"response from {url} exceeds the limit of {limit} bytes")
        body[filled:end] = chunk
        filled = end
        if hold is not None:
            hold.grow_to(filled)
    del body[filled:]
    if hold is not None:
        hold.settle(filled)
    return body


async def _get_body(
    session: aiohttp.ClientSession, url: str, options: ClientOptions, hold: PageHold | None = None
) -> bytearray:
    """A 200's body (within the size limit); other statuses and transport errors are classified."""
    try:
        async with session.get(
            url,
            timeout=aiohttp.ClientTimeout(total=options.timeout),
            headers=options.headers,
            allow_redirects=options.follow_redirects,
        ) as response:
            if 300 <= response.status < 400 and not options.follow_redirects:
                raise FatalError(
                    f"HTTP {response.status} from {url}: a redirect is not followed with the "
                    "partner Connection's credentials; give the final URL"
                )
            body = await read_limited(response, url, options.max_response_bytes, hold)
            if response.status != 200:
                raise error_for_status(
                    response.status,
                    url,
                    body.decode("utf-8", "replace"),
                    retry_after=response.headers.get("Retry-After"),
                )
            return body
    except PollerError:
        raise
    except Exception as exc:  # transport errors are classified in one place
        raise classify_exception(exc, url) from exc


def _not_json(url: str, body: bytes | bytearray) -> RetriableError:
    excerpt = body[:80].decode("utf-8", "replace")
    return RetriableError(f"response from {url} is not JSON (starts with {excerpt!r})")


async def _get_json(session: aiohttp.ClientSession, url: str, options: ClientOptions) -> object:
    body = await _get_body(session, url, options)
    try:
        return load_json(body)
    except ValueError:
        raise _not_json(url, body) from None


async def with_retries(
    call: Callable[[], Awaitable[Result]], policy: RetryPolicy, on_retry: RetryCallback | None = None
) -> tuple[Result, int]:
    """Run ``call()`` until it succeeds, a fatal error occurs or the attempts run out.

    Returns ``(result, attempts)``; raises the last error otherwise.
    """
    for attempt in range(1, policy.attempts + 1):
        try:
            return await call(), attempt
        except RetriableError as exc:
            if attempt == policy.attempts:
                raise RetriableError(f"gave up after {attempt} attempts: {exc}") from exc
            if on_retry:
                on_retry(attempt, exc)
            await asyncio.sleep(policy.wait_before(attempt, exc))
    raise AssertionError("unreachable")


async def fetch_metadata(
    session: aiohttp.ClientSession, url: str, policy: RetryPolicy, options: ClientOptions
) -> ApiMetadata:
    """Ask for one record and read ``totalRecords``/``maxRecordsPerPage`` from the answer."""

    async def call() -> ApiMetadata:
        document = await _get_json(session, page_url(url, 0, 1), options)
        return parse_metadata(document)

    metadata, _ = await with_retries(call, policy)
    return metadata


def check_page_document(document: object, page: PageTask) -> int:
    """The number of records in a page response; RetriableError if it is cut short or malformed."""
    if not isinstance(document, dict) or not isinstance(document.get("payload"), list):
        raise RetriableError(f"page {page.page_id} response has no 'payload' list")
    return _checked_count(len(document["payload"]), page)


def _checked_count(served: int, page: PageTask) -> int:
    if served != page.count:
        raise RetriableError(f"page {page.page_id} returned {served} records, expected {page.count}")
    return served


class _PayloadShape(msgspec.Struct):
    """A seed page as far as its check goes: its ``payload`` records, left unparsed."""

    payload: list[msgspec.Raw]


def count_page_records(body: bytes | bytearray, page: PageTask, url: str) -> int:
    """``check_page_document`` of the parsed body, without building the records: msgspec checks
    the JSON and counts the payload's items as views into ``body`` (a page is held once, not
    twice). A body it refuses is checked the old way (``json.loads``), so what passes is the same."""
    try:
        served = len(msgspec.json.decode(body, type=_PayloadShape).payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        served = -1
    try:
        if served < 0:
            return check_page_document(json.loads(body), page)
        check_utf8(body)  # skipped strings are not decoded: json.loads refused bad UTF-8
    except ValueError:
        raise _not_json(url, body) from None
    return _checked_count(served, page)


async def fetch_page(
    session: aiohttp.ClientSession,
    url: str,
    page: PageTask,
    policy: RetryPolicy,
    options: ClientOptions,
    on_retry: RetryCallback | None = None,
    hold: PageHold | None = None,
) -> FetchedPage:
    """One page's raw body, checked to hold exactly the records asked for.

    With ``hold``, the body is reserved from the task's byte budget while it is read; the caller
    releases ``hold`` once the page is saved.
    """
    target = page_url(url, page.start_at, page.count)

    async def call() -> tuple[bytearray, int]:
        try:
            body = await _get_body(session, target, options, hold)
            return body, count_page_records(body, page, target)
        except BaseException:
            if hold is not None:
                hold.release()  # nothing is held while the retry waits
            raise

    (body, records), attempts = await with_retries(call, policy, on_retry)
    return FetchedPage(body=body, record_count=records, attempts=attempts)
