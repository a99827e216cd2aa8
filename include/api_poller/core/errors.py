"""The one place that decides whether a failure is worth retrying."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp


class PollerError(Exception):
    """Base class of the poller's own errors; ``status`` is the HTTP status that caused it, if any
    (metrics count retries by it)."""

    status: int | None = None


class RetriableError(PollerError):
    """A transient failure: trying the same request again may succeed.

    ``retry_after`` is the wait in seconds the server asked for, if it did.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class FatalError(PollerError):
    """A permanent failure: retrying the same request cannot help."""


class InvalidJobRequest(FatalError):
    """The job's own input (URL, Params) is unusable."""


class InvalidMetadata(FatalError):
    """The partner API's metadata cannot be planned from."""


class SourceError(FatalError):
    """A source file is unusable; the message names the file and the field: ``file: field: why``."""

    def __init__(self, file: str, field: str, message: str) -> None:
        super().__init__(f"{file}: {field}: {message}" if field else f"{file}: {message}")
        self.file = file
        self.field = field
        self.reason = message


class ResponseShapeError(FatalError):
    """A response lacks what the source declares: records, a total, a cursor, a next link."""


class PaginationLoop(FatalError):
    """The API sent back a cursor or next link already followed: walking on would never end."""


class CrossOriginRequest(FatalError):
    """A request (a next link, a redirect, a token URL) would leave the Connection's origin."""


class AuthenticationError(FatalError):
    """Credentials are missing from the Connection, or the partner refused them."""


RETRIABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def error_for_status(
    status: int, url: str, body_excerpt: str = "", retry_after: str | None = None
) -> PollerError:
    """Map a non-2xx HTTP status to a retriable or fatal error."""
    detail = f"HTTP {status} from {url}"
    if body_excerpt:
        detail += f": {body_excerpt[:200]}"
    error: PollerError
    if status in RETRIABLE_STATUS or status >= 500:
        wait = parse_retry_after(retry_after) if status in (429, 503) else None
        error = RetriableError(detail, retry_after=wait)
    else:
        error = FatalError(detail)
    error.status = status
    return error


def classify_exception(exc: BaseException, url: str) -> PollerError:
    """Map a transport-level exception to a retriable or fatal error."""
    if isinstance(exc, PollerError):
        return exc
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return RetriableError(f"timed out waiting for {url}")
    if isinstance(exc, aiohttp.InvalidURL):
        return FatalError(f"invalid URL {url}")
    if isinstance(exc, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, ConnectionError)):
        return RetriableError(f"connection to {url} failed: {exc}")
    return FatalError(f"{type(exc).__name__} while fetching {url}: {exc}")
