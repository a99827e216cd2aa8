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

from api_poller.core.errors import (
    FatalError,
    PollerError,
    RetriableError,
    classify_exception,
    error_for_status,
)
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
    body: bytes
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


async def read_limited(response: aiohttp.ClientResponse, url: str, limit: int) -> bytes:
    """The response body, refused (FatalError) once it passes ``limit`` bytes."""
    declared = response.content_length
    if declared is not None and declared > limit:
        raise FatalError(f"response from {url} is {declared} bytes, above the limit of {limit}")
    body = bytearray()
    async for chunk in response.content.iter_chunked(1 << 16):
        body += chunk
        if len(body) > limit:
            raise FatalError(f"response from {url} exceeds the limit of {limit} bytes")
    return bytes(body)


async def _get_json(session: aiohttp.ClientSession, url: str, options: ClientOptions) -> tuple[bytes, object]:
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
            body = await read_limited(response, url, options.max_response_bytes)
            if response.status != 200:
                raise error_for_status(
                    response.status,
                    url,
                    body.decode("utf-8", "replace"),
                    retry_after=response.headers.get("Retry-After"),
                )
    except PollerError:
        raise
    except Exception as exc:  # transport errors are classified in one place
        raise classify_exception(exc, url) from exc
    try:
        return body, json.loads(body)
    except ValueError:
        excerpt = body[:80].decode("utf-8", "replace")
        raise RetriableError(f"response from {url} is not JSON (starts with {excerpt!r})") from None


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
        _, document = await _get_json(session, page_url(url, 0, 1), options)
        return parse_metadata(document)

    metadata, _ = await with_retries(call, policy)
    return metadata


def check_page_document(document: object, page: PageTask) -> int:
    """The number of records in a page response; RetriableError if it is cut short or malformed."""
    if not isinstance(document, dict) or not isinstance(document.get("payload"), list):
        raise RetriableError(f"page {page.page_id} response has no 'payload' list")
    served = len(document["payload"])
    if served != page.count:
        raise RetriableError(f"page {page.page_id} returned {served} records, expected {page.count}")
    return served


async def fetch_page(
    session: aiohttp.ClientSession,
    url: str,
    page: PageTask,
    policy: RetryPolicy,
    options: ClientOptions,
    on_retry: RetryCallback | None = None,
) -> FetchedPage:
    """One page's raw body, checked to hold exactly the records asked for."""
    target = page_url(url, page.start_at, page.count)

    async def call() -> tuple[bytes, int]:
        body, document = await _get_json(session, target, options)
        return body, check_page_document(document, page)

    (body, records), attempts = await with_retries(call, policy, on_retry)
    return FetchedPage(body=body, record_count=records, attempts=attempts)
