"""Which request comes next: one small paginator per kind of paginated API.

The contract (the same for every kind; after the Singer SDK's and dlt's paginators):

* ``first_request()``: the first page's request (page 1), built from the base request (the
  source's URL and fixed query parameters).
* ``next_request(response)``: from a page's response (status, headers, parsed body, extracted
  records, and the request it answers), the next page's request, or a ``Stop`` saying why the
  walk ends: ``EMPTY_PAGE``, ``LAST_PAGE`` (the total is reached), ``NO_CURSOR``,
  ``HAS_MORE_FALSE``, ``NO_NEXT_LINK``, or ``MAX_PAGES`` (the source's guard; the API had more).
  A cursor or next link already followed raises ``PaginationLoop``; a body without what the
  source declares (a total that is not a number, a has_more that is not a boolean, ...) raises
  ``ResponseShapeError``.
* ``plan(first_response)``: offset and page-number paginators whose total is in the first
  response return the requests of pages 2..N (capped at ``max_pages``), to fetch in parallel;
  ``None`` means the total is unknown and the pages are walked with ``next_request``.
  ``page_rule()`` is how they make page n's request from the base request (``PageRule``, constant
  size), so a plan can carry page ranges instead of one request a page.

The base class does what every kind shares: the empty-page and max_pages rules, loop detection,
and the origin check (the base URL and every next link must stay on the Connection's origin, or
``CrossOriginRequest`` names the foreign host before any request is made). Subclasses only say how
their next request is made.

Requests and stops are plain frozen data: ``PageRequest.to_dict()`` / ``from_dict()`` carry a
request through XCom or an SQS message. A paginator instance holds the loop-detection memory of
one walk; make a new one per walk (``paginator_for``). A walk resumes (after a task retry) on a
fresh paginator from its last saved request: fetch it, then go on with ``next_request``.

Messages name URLs: a next link that echoes a credential (``?api_key=...``) would show it there,
so callers log errors through ``Credentials.redact``.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, ClassVar, Generic, TypeVar
from urllib.parse import urlencode, urljoin

from api_poller.core.errors import CrossOriginRequest, FatalError, PaginationLoop, ResponseShapeError
from api_poller.partner.auth import Origin
from api_poller.partner.records import ValuePath, read_total
from api_poller.sources.spec import (
    CursorPaginatorSpec,
    NextUrlPaginatorSpec,
    OffsetPaginatorSpec,
    PageNumberPaginatorSpec,
    PaginatorSpec,
)

Params = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class PageRequest:
    """One page's request: ``url`` (without a query, or a next link with its own query) plus
    ``params`` appended to it; ``page`` is the page's 1-based number in the job."""

    url: str
    params: Params = ()
    page: int = 1

    def full_url(self) -> str:
        if not self.params:
            return self.url
        return f"{self.url}{'&' if '?' in self.url else '?'}{urlencode(self.params)}"

    def param(self, name: str) -> str | None:
        """The last value of a query parameter in ``params``, if any."""
        values = [value for key, value in self.params if key == name]
        return values[-1] if values else None

    def with_params(self, page: int, updates: Mapping[str, str]) -> PageRequest:
        """A request for ``page`` with ``updates`` replacing (or added to) the parameters."""
        kept = tuple((key, value) for key, value in self.params if key not in updates)
        return replace(self, params=kept + tuple(updates.items()), page=page)

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "params": [list(pair) for pair in self.params], "page": self.page}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PageRequest:
        params = tuple((str(key), str(value)) for key, value in data.get("params") or ())
        return cls(url=str(data["url"]), params=params, page=int(data.get("page", 1)))


def base_request(url: str, params: Mapping[str, str] | None = None) -> PageRequest:
    """The request every page starts from: the source's URL and its fixed query parameters."""
    return PageRequest(url=url, params=tuple((params or {}).items()))


@dataclass(frozen=True)
class PageRule:
    """How a planned page's request is made from the base request: on page n, each parameter of
    ``counters`` (name, value on page 1, step) is ``first + step * (n - 1)``; a step of 0 sends the
    same value on every page. A plan of any length travels as a page range and this rule."""

    counters: tuple[tuple[str, int, int], ...]

    def request(self, base: PageRequest, page: int) -> PageRequest:
        return base.with_params(
            page, {name: str(first + step * (page - 1)) for name, first, step in self.counters}
        )

    def to_dict(self) -> list[list[Any]]:
        return [list(counter) for counter in self.counters]

    @classmethod
    def from_dict(cls, data: Sequence[Sequence[Any]]) -> PageRule:
        return cls(tuple((str(name), int(first), int(step)) for name, first, step in data))


@dataclass(frozen=True)
class PageResponse:
    """What a paginator reads from a page: ``headers`` is a case-insensitive lookup's input (give
    repeated headers, such as several ``Link`` headers, joined with ", ")."""

    request: PageRequest
    status: int
    body: Any
    records: Sequence[Mapping[str, Any]]
    headers: Mapping[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        values = [value for key, value in self.headers.items() if key.lower() == wanted]
        return ", ".join(values) if values else None


class StopReason(StrEnum):
    EMPTY_PAGE = "empty_page"
    LAST_PAGE = "last_page"
    NO_CURSOR = "no_cursor"
    HAS_MORE_FALSE = "has_more_false"
    NO_NEXT_LINK = "no_next_link"
    MAX_PAGES = "max_pages"


@dataclass(frozen=True)
class Stop:
    """The walk ends after ``page``; ``detail`` says why in words."""

    reason: StopReason
    page: int
    detail: str = ""

    @property
    def truncated(self) -> bool:
        """True when the API had more pages than the source's max_pages allowed."""
        return self.reason is StopReason.MAX_PAGES


class Paginator(ABC):
    """The shared rules of every kind; subclasses implement ``_first`` and ``_follow``."""

    kind: ClassVar[str]

    def __init__(self, base: PageRequest, *, origin: Origin, max_pages: int) -> None:
        if max_pages < 1:
            raise ValueError(f"max_pages must be >= 1, got {max_pages}")
        self.base = base
        self.origin = origin
        self.max_pages = max_pages
        self._check_origin(base.url, "the source's URL")
        # Loop detection: what each followed request was keyed by -> the page it was for.
        self._seen: dict[str, int] = {}

    def first_request(self) -> PageRequest:
        request = self._first()
        self._seen[self._loop_key(request)] = request.page
        return request

    def next_request(self, response: PageResponse) -> PageRequest | Stop:
        page = response.request.page
        if not response.records:
            return Stop(StopReason.EMPTY_PAGE, page, f"page {page} has no records")
        step = self._follow(response)
        if isinstance(step, Stop):
            return step
        key = self._loop_key(step)
        if key in self._seen:
            raise PaginationLoop(
                f"{self.kind} pagination loops: page {page} points to {self._describe(step)} again "
                f"(already followed for page {self._seen[key]}); stopping instead of fetching forever"
            )
        if step.page > self.max_pages:
            return Stop(StopReason.MAX_PAGES, page, f"max_pages ({self.max_pages}) reached; the API has more")
        self._seen[key] = step.page
        return step

    def total_pages(self, first: PageResponse) -> int | None:
        """How many pages the job has, from the first response; None when it does not say."""
        return None

    def planned_page_count(self, first: PageResponse) -> int | None:
        """How many pages a plan fetches (the total, at most max_pages) when the first response
        tells the total, else None (the pages are walked)."""
        total = self.total_pages(first)
        return None if total is None else min(total, self.max_pages)

    def plan(self, first: PageResponse) -> list[PageRequest] | None:
        """Requests of pages 2..N (at most max_pages in all) when the total is known, else None."""
        count = self.planned_page_count(first)
        if count is None:
            return None
        rule = self.page_rule()
        return [rule.request(self.base, page) for page in range(2, count + 1)]

    def page_rule(self) -> PageRule:
        """How page n's request is made from the base request, for the kinds that plan."""
        raise NotImplementedError(f"{self.kind} pages cannot be planned")

    @abstractmethod
    def _first(self) -> PageRequest: ...

    @abstractmethod
    def _follow(self, response: PageResponse) -> PageRequest | Stop:
        """The next request after a non-empty page, or a Stop of this kind's own."""

    def _loop_key(self, request: PageRequest) -> str:
        return request.full_url()

    def _describe(self, request: PageRequest) -> str:
        return request.full_url()

    def _check_origin(self, url: str, what: str) -> None:
        if not self.origin.owns(url):
            try:
                target = str(Origin.of(url))
            except FatalError:
                target = repr(url.split("?")[0][:200])  # a query may echo a credential
            raise CrossOriginRequest(
                f"{what} is on {target}, not on the Connection's {self.origin}: refused before any request"
            )


def _check_page_size(kind: str, first: PageResponse, expected: int, total_records: int) -> None:
    """Planning assumes every page but the last is full; an API that caps the page size below
    the one asked for would leave gaps between the planned pages."""
    got = len(first.records)
    if got < expected and got < total_records:
        raise ResponseShapeError(
            f"{kind}: the first page has {got} records while page_size is {expected} and the total is "
            f"{total_records}: the API caps its page size; set page_size to {got}"
        )


class OffsetPaginator(Paginator):
    kind = "offset"

    def __init__(self, spec: OffsetPaginatorSpec, base: PageRequest, *, origin: Origin, max_pages: int):
        super().__init__(base, origin=origin, max_pages=max_pages)
        self.spec = spec

    def _request(self, page: int, offset: int) -> PageRequest:
        updates = {self.spec.offset_param: str(offset), self.spec.limit_param: str(self.spec.page_size)}
        return self.base.with_params(page, updates)

    def _first(self) -> PageRequest:
        return self._request(1, 0)

    def page_rule(self) -> PageRule:
        size = self.spec.page_size
        return PageRule(((self.spec.offset_param, 0, size), (self.spec.limit_param, size, 0)))

    def _total_records(self, response: PageResponse, *, first: bool = False) -> int | None:
        if self.spec.total_path is None:
            return None
        return read_total(self.spec.total_path, response.body, required=first)

    def total_pages(self, first: PageResponse) -> int | None:
        total = self._total_records(first, first=True)
        if total is None:
            return None
        _check_page_size(self.kind, first, self.spec.page_size, total)
        return max(1, math.ceil(total / self.spec.page_size))

    def _follow(self, response: PageResponse) -> PageRequest | Stop:
        offset = int(response.request.param(self.spec.offset_param) or 0)
        # Advance by what came back, not by what was asked: an API that caps its page size
        # still has every record walked once.
        following = offset + len(response.records)
        total = self._total_records(response)
        if total is not None and following >= total:
            return Stop(
                StopReason.LAST_PAGE, response.request.page, f"offset {following} reaches the total {total}"
            )
        return self._request(response.request.page + 1, following)


class PageNumberPaginator(Paginator):
    kind = "page_number"

    def __init__(self, spec: PageNumberPaginatorSpec, base: PageRequest, *, origin: Origin, max_pages: int):
        super().__init__(base, origin=origin, max_pages=max_pages)
        self.spec = spec
        # Without a size parameter the API chooses the page size: what its first page held.
        self._api_page_size: int | None = None

    def _note_page_size(self, response: PageResponse) -> int:
        if response.request.page == 1 or self._api_page_size is None:
            self._api_page_size = len(response.records)
        return self._api_page_size

    def page_rule(self) -> PageRule:
        counters: list[tuple[str, int, int]] = [(self.spec.page_param, self.spec.first_page, 1)]
        if self.spec.size_param:
            counters.append((self.spec.size_param, self.spec.page_size, 0))
        return PageRule(tuple(counters))

    def _request(self, page: int) -> PageRequest:
        return self.page_rule().request(self.base, page)

    def _first(self) -> PageRequest:
        return self._request(1)

    def _pages_from(self, response: PageResponse, first_page_size: int, *, planning: bool) -> int | None:
        if self.spec.total_pages_path is not None:
            return read_total(self.spec.total_pages_path, response.body, required=planning)
        if self.spec.total_records_path is None:
            return None
        total = read_total(self.spec.total_records_path, response.body, required=planning)
        if total is None:
            return None
        size = self.spec.page_size if self.spec.size_param else first_page_size
        if self.spec.size_param and planning:
            _check_page_size(self.kind, response, size, total)
        return max(1, math.ceil(total / size)) if size else 1

    def total_pages(self, first: PageResponse) -> int | None:
        return self._pages_from(first, self._note_page_size(first), planning=True)

    def _follow(self, response: PageResponse) -> PageRequest | Stop:
        page = response.request.page
        total = self._pages_from(response, self._note_page_size(response), planning=False)
        if total is not None and page >= total:
            return Stop(StopReason.LAST_PAGE, page, f"page {page} is the last of {total}")
        return self._request(page + 1)


def _scalar_cursor(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ResponseShapeError(f"{where} is {value!r}: a cursor must be a string or a number")
    return str(value)


_WalkSpec = TypeVar("_WalkSpec", CursorPaginatorSpec, NextUrlPaginatorSpec)


class _WalkingPaginator(Paginator, Generic[_WalkSpec]):
    """What the cursor and next-link paginators share: page 1 is the base request, with the page
    size when the source sets one."""

    def __init__(self, spec: _WalkSpec, base: PageRequest, *, origin: Origin, max_pages: int):
        super().__init__(base, origin=origin, max_pages=max_pages)
        self.spec: _WalkSpec = spec

    def _first(self) -> PageRequest:
        if self.spec.page_size is None:
            return replace(self.base, page=1)
        return self.base.with_params(1, {self.spec.limit_param: str(self.spec.page_size)})


class CursorPaginator(_WalkingPaginator[CursorPaginatorSpec]):
    kind = "cursor"

    def _follow(self, response: PageResponse) -> PageRequest | Stop:
        page = response.request.page
        if self.spec.cursor_path is not None:
            cursor = self._cursor_at(self.spec.cursor_path, response)
        else:
            cursor = self._cursor_after_has_more(response)
        if isinstance(cursor, Stop):
            return cursor
        updates = {self.spec.cursor_param: cursor}
        if self.spec.page_size is not None:
            updates[self.spec.limit_param] = str(self.spec.page_size)
        return self.base.with_params(page + 1, updates)

    def _cursor_at(self, path: ValuePath, response: PageResponse) -> str | Stop:
        value = path.find(response.body)
        if value is None or value == "":
            page = response.request.page
            return Stop(StopReason.NO_CURSOR, page, f"page {page} has no cursor at {path.text!r}")
        return _scalar_cursor(value, f"the cursor at {path.text!r}")

    def _cursor_after_has_more(self, response: PageResponse) -> str | Stop:
        path = self.spec.has_more_path
        assert path is not None and self.spec.cursor_key is not None  # the spec has one mode
        page = response.request.page
        found, has_more = path.locate(response.body)
        if not found:
            raise ResponseShapeError(
                f"has_more path {path.text!r} matches nothing: {path.explain_missing(response.body)}"
            )
        if has_more is None or has_more is False:
            return Stop(StopReason.HAS_MORE_FALSE, page, f"page {page} says {path.text} is {has_more}")
        if has_more is not True:
            raise ResponseShapeError(f"has_more at {path.text!r} is {has_more!r}, not true or false")
        last = response.records[-1]
        if last.get(self.spec.cursor_key) is None:
            raise ResponseShapeError(
                f"{path.text} is true but the last record of page {page} has no {self.spec.cursor_key!r}"
            )
        return _scalar_cursor(last[self.spec.cursor_key], f"the last record's {self.spec.cursor_key!r}")

    def _loop_key(self, request: PageRequest) -> str:
        return request.param(self.spec.cursor_param) or ""

    def _describe(self, request: PageRequest) -> str:
        return f"cursor {request.param(self.spec.cursor_param)!r}"


# <target> then its parameters; a quoted parameter value may hold ';' or ','.
_LINK = re.compile(r"""<([^>]*)>((?:\s*;\s*[^;,"]*(?:"[^"]*"[^;,"]*)*)*)""")
_REL = re.compile(r"""\brel\s*=\s*(?:"([^"]*)"|([^\s;,"]+))""", re.IGNORECASE)


def next_link_from_header(value: str | None) -> str | None:
    """The target of the ``rel="next"`` link of a ``Link`` header (RFC 8288), if any."""
    for match in _LINK.finditer(value or ""):
        rel = _REL.search(match.group(2))
        if rel and "next" in (rel.group(1) or rel.group(2) or "").lower().split():
            return match.group(1).strip()
    return None


class NextUrlPaginator(_WalkingPaginator[NextUrlPaginatorSpec]):
    kind = "next_url"

    def _follow(self, response: PageResponse) -> PageRequest | Stop:
        page = response.request.page
        if self.spec.link_header:
            link, where = next_link_from_header(response.header("Link")), 'the Link header rel="next"'
        else:
            assert self.spec.next_url_path is not None
            link, where = (
                response_link(self.spec.next_url_path, response.body),
                repr(self.spec.next_url_path.text),
            )
        if not link:
            return Stop(StopReason.NO_NEXT_LINK, page, f"page {page} has no next link at {where}")
        # A relative link is relative to the page it came in (RFC 3986 5.2).
        target = urljoin(response.request.full_url(), link)
        self._check_origin(target, f"the next link of page {page}")
        return PageRequest(url=target, page=page + 1)


def response_link(path: ValuePath, body: Any) -> str | None:
    value = path.find(body)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ResponseShapeError(f"next link at {path.text!r} is {value!r}, not a URL string")
    return value.strip()


def paginator_for(spec: PaginatorSpec, base: PageRequest, *, origin: Origin, max_pages: int) -> Paginator:
    """A fresh paginator (one per walk) for a source's paginator spec."""
    if isinstance(spec, OffsetPaginatorSpec):
        return OffsetPaginator(spec, base, origin=origin, max_pages=max_pages)
    if isinstance(spec, PageNumberPaginatorSpec):
        return PageNumberPaginator(spec, base, origin=origin, max_pages=max_pages)
    if isinstance(spec, CursorPaginatorSpec):
        return CursorPaginator(spec, base, origin=origin, max_pages=max_pages)
    return NextUrlPaginator(spec, base, origin=origin, max_pages=max_pages)
