"""What one simulator instance does: workload, faults, auth and misbehaviour (mirrors the CLI flags)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from yarl import URL

# ``retry_after`` value asking for an HTTP-date instead of delay-seconds.
RETRY_AFTER_HTTP_DATE = "http-date"

AUTH_KINDS = ("none", "basic", "bearer", "api_key_header", "api_key_query", "oauth2_client_credentials")
# RFC 9110 token characters: what a header name may be made of.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def valid_retry_after(value: str) -> bool:
    return value == RETRY_AFTER_HTTP_DATE or (value.isascii() and value.isdigit())


def url_problem(value: str) -> str | None:
    """Why ``value`` is not an absolute http(s) URL with a host, or None."""
    try:
        url = URL(value)
    except ValueError:
        return f"{value!r} is not a URL"
    if url.scheme not in {"http", "https"} or not url.host:
        return f"{value!r} is not an absolute http(s) URL"
    return None


@dataclass(frozen=True)
class AuthConfig:
    """The one auth kind the data endpoints require (``/health``, ``/stats``, ``/admin`` stay open).

    ``login`` and ``secret`` play the roles of an Airflow Connection's login and password:
    basic = login/secret as user/password; bearer = secret as the token; ``api_key_header`` /
    ``api_key_query`` = secret as the key, sent in header ``header`` / query parameter ``param``;
    ``oauth2_client_credentials`` = login/secret as client id/secret at ``POST /oauth/token``,
    whose tokens live ``token_ttl_seconds`` (0: expired at once).
    """

    kind: str = "none"
    login: str = "sim-user"
    secret: str = "sim-secret"
    header: str = "X-API-Key"
    param: str = "api_key"
    token_ttl_seconds: int = 3600

    def __post_init__(self) -> None:
        if self.kind not in AUTH_KINDS:
            raise ValueError(f"auth kind must be one of {', '.join(AUTH_KINDS)}; got {self.kind!r}")
        if not self.login or ":" in self.login:
            raise ValueError("auth login must be non-empty and without ':' (HTTP basic splits on it)")
        if not self.secret:
            raise ValueError("auth secret must be non-empty")
        if not _HEADER_NAME.fullmatch(self.header):
            raise ValueError(f"auth header must be a valid header name, got {self.header!r}")
        if not self.param:
            raise ValueError("auth param must be non-empty")
        if self.token_ttl_seconds < 0:
            raise ValueError("token_ttl_seconds must be >= 0")

    @property
    def credential_params(self) -> frozenset[str]:
        """Query parameters that carry a credential (never copied into next links)."""
        return frozenset({self.param}) if self.kind == "api_key_query" else frozenset()


@dataclass(frozen=True)
class Misbehaviour:
    """Ways the API can be wrong, for bad-input tests (all off by default).

    ``loop_after_pages`` k > 0: page k's next cursor / next link points back at page k (the
    has-more endpoint serves page k again instead of page k + 1), so a client sees a repeat.
    ``foreign_next_url``: every next link gets that URL's origin (same path and query).
    ``total_not_a_number``: every total in a body is ``"lots"``.
    ``redirect_to``: every data request is answered ``302`` to that URL's origin, same path and
    query (credentials in the query included: a client must not follow it).
    ``endless``: records never run out (ids keep growing), so a next cursor/link is always there
    and ``has_more`` is always true; only a client's page cap stops it. Totals stay as they are.
    """

    loop_after_pages: int = 0
    foreign_next_url: str | None = None
    total_not_a_number: bool = False
    redirect_to: str | None = None
    endless: bool = False

    def __post_init__(self) -> None:
        if self.loop_after_pages < 0:
            raise ValueError("loop_after_pages must be >= 0 (0: off)")
        for name in ("foreign_next_url", "redirect_to"):
            value = getattr(self, name)
            problem = value is not None and url_problem(value)
            if problem:
                raise ValueError(f"{name}: {problem}")


@dataclass(frozen=True)
class SimulatorConfig:
    """Behaviour of one simulator instance (mirrors the CLI flags).

    ``latency_ms`` is either a fixed delay or an inclusive ``(low, high)``
    range sampled uniformly; it is normalised to a tuple.

    The ``*_rate`` fields are each fault's own probability per data request
    (see ``faults`` for their precedence). ``retry_after`` is the 429s'
    ``Retry-After``: delay-seconds (``"1"``) or ``"http-date"`` (an IMF-fixdate
    at least one second from now). ``non_contiguous_ids`` makes record ids
    ``8 * offset + 1..7`` (unique, increasing, gappy) instead of the offset;
    ``record_bytes`` > 0 makes each record's ``payload`` string that long.

    ``page_size`` is ``/payload``'s ``maxRecordsPerPage`` and, for the other data
    endpoints, both the default and the largest page size. ``first_page`` (0 or 1) is
    the number of the first page of ``/pages/items`` and ``/link/items``.
    """

    total_records: int = 10_000
    page_size: int = 100
    latency_ms: int | float | tuple[float, float] = (0, 1000)
    error_rate: float = 0.1
    seed: int = 42
    poison_pages: frozenset[int] = field(default_factory=frozenset)
    host: str = "127.0.0.1"
    port: int = 0
    status_5xx_codes: tuple[int, ...] = (500,)
    rate_limit_rate: float = 0.0
    retry_after: str = "1"
    hang_rate: float = 0.0
    hang_seconds: float = 30.0
    drop_rate: float = 0.0
    truncate_rate: float = 0.0
    non_contiguous_ids: bool = False
    record_bytes: int = 0
    first_page: int = 1
    auth: AuthConfig = field(default_factory=AuthConfig)
    misbehaviour: Misbehaviour = field(default_factory=Misbehaviour)

    def __post_init__(self) -> None:
        latency = self.latency_ms
        if isinstance(latency, (int, float)):
            latency = (latency, latency)
        low, high = latency
        # Frozen dataclass: normalise via object.__setattr__.
        object.__setattr__(self, "latency_ms", (float(low), float(high)))
        object.__setattr__(self, "poison_pages", frozenset(self.poison_pages))
        object.__setattr__(self, "status_5xx_codes", tuple(self.status_5xx_codes))
        object.__setattr__(self, "retry_after", str(self.retry_after))
        if self.total_records < 0:
            raise ValueError("total_records must be >= 0")
        if self.page_size < 1:
            raise ValueError("page_size must be >= 1")
        if not 0 <= low <= high:
            raise ValueError("latency_ms must satisfy 0 <= low <= high")
        for name in ("error_rate", "rate_limit_rate", "hang_rate", "drop_rate", "truncate_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")
        if any(page < 0 for page in self.poison_pages):
            raise ValueError("poison_pages must be >= 0")
        if not self.status_5xx_codes or not all(
            isinstance(code, int) and 500 <= code <= 599 for code in self.status_5xx_codes
        ):
            raise ValueError("status_5xx_codes must be a non-empty list of codes in 500..599")
        if not valid_retry_after(self.retry_after):
            raise ValueError(f'retry_after must be seconds (e.g. "1") or "{RETRY_AFTER_HTTP_DATE}"')
        if not 0.0 <= self.hang_seconds < math.inf:
            raise ValueError("hang_seconds must be >= 0")
        if self.record_bytes < 0:
            raise ValueError("record_bytes must be >= 0")
        if self.first_page not in (0, 1):
            raise ValueError("first_page must be 0 or 1")
