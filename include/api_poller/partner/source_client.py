"""One page of a source, fetched with credentials that never leave the Connection's origin.

``SourceClient.fetch(request)`` GETs a ``PageRequest`` and returns the page: raw body, parsed JSON,
records (at the source's records path) and headers. Each attempt:

* asks the credentials for the headers/query parameters of that exact URL
  (``Credentials.parts_for``): a URL off the Connection's origin raises ``CrossOriginRequest``
  before anything is sent;
* waits for the task's ``RateLimiter``;
* never lets aiohttp follow a redirect: a 3xx to the same origin is followed here (at most
  ``MAX_REDIRECTS``, credentials asked again for the new URL), one to another origin is a
  ``CrossOriginRequest`` naming that host, and nothing is sent there;
* on a 401, asks ``credentials.unauthorized`` once whether fresh credentials may help (OAuth2)
  and retries at once if so;
* on a 429, pauses the limiter (every request of the task) before the retry.

Retries, backoff, Retry-After and retriable-vs-fatal are ``partner.client``'s (``with_retries``,
``error_for_status``, ``classify_exception``). Messages name the request's URL without the
credentials' query parameters, and pass through ``credentials.redact`` (an API may echo a key).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urljoin

import aiohttp

from api_poller.core.byte_budget import PageHold
from api_poller.core.errors import (
    AuthenticationError,
    CrossOriginRequest,
    FatalError,
    PollerError,
    RetriableError,
    classify_exception,
    error_for_status,
)
from api_poller.core.json_body import load_json
from api_poller.partner.auth import AuthParts, Credentials, Origin
from api_poller.partner.client import ClientOptions, RetryCallback, RetryPolicy, read_limited, with_retries
from api_poller.partner.connection import retry_policy
from api_poller.partner.paginators import PageRequest, PageResponse
from api_poller.partner.rate_limit import RateLimiter
from api_poller.partner.records import RecordsPath
from api_poller.settings import PollerSettings
from api_poller.sources.spec import SourceSpec

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class SourcePage:
    """A page as served: ``body`` is saved as is; ``records`` are what the records path found."""

    request: PageRequest
    status: int
    body: bytes | bytearray
    document: Any
    records: list[dict[str, Any]]
    headers: Mapping[str, str] = field(default_factory=dict)
    attempts: int = 1

    def response(self) -> PageResponse:
        """What a paginator reads to choose the next request."""
        return PageResponse(self.request, self.status, self.document, self.records, self.headers)


def _with_params(url: str, params: tuple[tuple[str, str], ...]) -> str:
    if not params:
        return url
    return f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"


def _joined_headers(response: aiohttp.ClientResponse) -> dict[str, str]:
    """Headers by name, repeated ones (several ``Link`` headers) joined with ", "."""
    joined: dict[str, str] = {}
    for name, value in response.headers.items():
        joined[name] = f"{joined[name]}, {value}" if name in joined else value
    return joined


def source_client_options(settings: PollerSettings) -> ClientOptions:
    """Time and size limits; no headers: a source's credentials come from its own Connection,
    added per request by its ``Credentials`` (never the seed's API_POLLER_PARTNER_API_CONN_ID)."""
    return ClientOptions(
        timeout=settings.http_timeout_seconds, max_response_bytes=settings.max_response_bytes
    )


class SourceClient:
    """Fetches one source's pages through one aiohttp session, within one origin."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        credentials: Credentials,
        *,
        records: RecordsPath,
        policy: RetryPolicy,
        options: ClientOptions,
        limiter: RateLimiter | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._session = session
        self.credentials = credentials
        self._records = records
        self._policy = policy
        self._options = options
        self.limiter = limiter or RateLimiter(None)
        # The source's fixed headers; the credentials' own are added per request (and win).
        self._headers = dict(headers or {})

    @classmethod
    def for_source(
        cls,
        session: aiohttp.ClientSession,
        credentials: Credentials,
        spec: SourceSpec,
        settings: PollerSettings,
        limiter: RateLimiter | None = None,
    ) -> SourceClient:
        """The client of ``spec``'s pages, with the deployment's retry policy and limits."""
        return cls(
            session,
            credentials,
            records=spec.records,
            policy=retry_policy(settings),
            options=source_client_options(settings),
            limiter=limiter,
            headers=spec.headers,
        )

    async def fetch(
        self, request: PageRequest, on_retry: RetryCallback | None = None, hold: PageHold | None = None
    ) -> SourcePage:
        """The page for ``request``, retried as the policy says; errors are PollerErrors.

        With ``hold``, the page's body is reserved from the task's byte budget before it is read;
        the caller releases ``hold`` once the page is saved (nothing is held between attempts).
        """

        async def attempt() -> SourcePage:
            try:
                return await self._attempt(request, hold)
            except BaseException:
                if hold is not None:
                    hold.release()
                raise

        page, attempts = await with_retries(attempt, self._policy, on_retry)
        return SourcePage(
            page.request, page.status, page.body, page.document, page.records, page.headers, attempts
        )

    def shown(self, url: str) -> str:
        """A URL (or any text) fit for a message: secrets masked."""
        return self.credentials.redact(url)

    async def _attempt(self, request: PageRequest, hold: PageHold | None) -> SourcePage:
        url = request.full_url()
        refused_once = False
        redirects = 0
        while True:
            parts = await self.credentials.parts_for(url, self._session)
            status, headers, body = await self._get(url, parts, hold)
            if status in REDIRECT_STATUSES:
                redirects += 1
                url = self._redirect_target(url, headers, status, redirects)
                continue
            if status == 401 and not refused_once and await self.credentials.unauthorized(parts):
                refused_once = True  # fresh credentials (a new OAuth2 token) get one more try
                continue
            if status == 429:
                error = error_for_status(status, self.shown(url), retry_after=headers.get("Retry-After"))
                retry_after = error.retry_after if isinstance(error, RetriableError) else None
                await self.limiter.throttled(retry_after)
                raise error
            self.limiter.succeeded()
            if status in (401, 403):
                raise AuthenticationError(
                    f"HTTP {status} from {self.shown(url)}: the partner refused the Connection's credentials"
                )
            if not 200 <= status < 300:
                excerpt = self.shown(body[:200].decode("utf-8", "replace"))
                raise error_for_status(
                    status, self.shown(url), excerpt, retry_after=headers.get("Retry-After")
                )
            return self._page(request, status, headers, body, url)

    async def _get(
        self, url: str, parts: AuthParts, hold: PageHold | None
    ) -> tuple[int, dict[str, str], bytes | bytearray]:
        await self.limiter.acquire()
        target = _with_params(url, parts.params)
        try:
            async with self._session.get(
                target,
                headers={**self._headers, **parts.headers},
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self._options.timeout),
            ) as response:
                headers = _joined_headers(response)
                if response.status in REDIRECT_STATUSES:
                    return response.status, headers, b""
                body = await read_limited(response, self.shown(url), self._options.max_response_bytes, hold)
                return response.status, headers, body
        except PollerError:
            raise
        except Exception as error:  # transport errors are classified in one place
            raise classify_exception(error, self.shown(url)) from None

    def _redirect_target(self, url: str, headers: Mapping[str, str], status: int, redirects: int) -> str:
        location = next((value for name, value in headers.items() if name.lower() == "location"), None)
        if not location:
            raise FatalError(f"HTTP {status} from {self.shown(url)} without a Location header")
        target = urljoin(url, location.strip())
        if not self.credentials.origin.owns(target):
            try:
                where = str(Origin.of(target))
            except FatalError:
                where = "a URL without a host"
            raise CrossOriginRequest(
                f"{self.shown(url)} redirected (HTTP {status}) to {where}, off the Connection's origin "
                f"{self.credentials.origin}: not followed, no credentials sent there"
            )
        if redirects > MAX_REDIRECTS:
            raise FatalError(f"more than {MAX_REDIRECTS} redirects from {self.shown(url)}")
        return target

    def _page(
        self, request: PageRequest, status: int, headers: dict[str, str], body: bytes | bytearray, url: str
    ) -> SourcePage:
        try:
            document = load_json(body)
        except ValueError:
            excerpt = self.shown(body[:80].decode("utf-8", "replace"))
            raise RetriableError(
                f"response from {self.shown(url)} is not JSON (starts with {excerpt!r})"
            ) from None
        records = self._records.extract(document)
        return SourcePage(request, status, body, document, records, headers)
