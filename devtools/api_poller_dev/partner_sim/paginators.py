"""The same records behind one endpoint per pagination style.

Every endpoint takes the incremental filters ``updated_since=<ISO-8601>`` (records with
``updated_at`` >= it) and ``min_id=<n>`` (records with ``id`` >= n), also spelled
``filter=updated_at>=<ISO-8601>`` / ``filter=id>=<n>`` (for a source's filter template); positions
(offset, page, cursor) count within the filtered records. Page sizes default to, and may not exceed,
``SimulatorConfig.page_size``. Next links are absolute, keep the request's query (credential
parameters left out: a client adds its own) and change only the position.

==========================  ==========================================  =============================
endpoint                    parameters                                  answer
==========================  ==========================================  =============================
``/offset/items``           ``offset`` (0), ``limit``                   ``{"data": {"items": [...]},
                                                                        "meta": {"total": T}}``
``/pages/items``            ``page`` (first page), ``per_page``         ``{"results": [...],
                                                                        "total_records": T,
                                                                        "total_pages": X}``
``/cursor/items``           ``cursor`` (opaque; absent: start),         ``{"items": [...],
                            ``limit``                                   "next_cursor": C | null}``
``/cursor-has-more/items``  ``after`` (last id seen), ``limit``         ``{"records": [...],
                                                                        "has_more": bool}``
``/next-body/items``        ``offset`` (0), ``limit``                   ``{"items": [...], "links":
                                                                        {"next": URL | null}}``
``/link/items``             ``page`` (first page), ``per_page``         ``[...]`` with ``Link:``
                                                                        ``rel="next"`` (not on the
                                                                        last page), ``"last"``,
                                                                        ``"first"``, ``"prev"``
==========================  ==========================================  =============================
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from yarl import URL

from .data_endpoint import Page, data_endpoint, request_key
from .dataset import Dataset, derived_int
from .params import BadRequest, int_param, page_size_param, record_filter
from .state import CONFIG_KEY, DATASET_KEY

NOT_A_NUMBER = "lots"


def _views(request: web.Request) -> tuple[range, int]:
    """(offsets that may be served, the total the body tells): they differ only for ``endless``."""
    dataset = request.app[DATASET_KEY]
    wanted = record_filter(request)
    finite = dataset.view(wanted)
    if request.app[CONFIG_KEY].misbehaviour.endless:
        return dataset.view(wanted, endless=True), len(finite)
    return finite, len(finite)


def _total(request: web.Request, value: int) -> int | str:
    return NOT_A_NUMBER if request.app[CONFIG_KEY].misbehaviour.total_not_a_number else value


def _records(dataset: Dataset, served: range) -> list[dict[str, Any]]:
    return [dataset.record(offset) for offset in served]


def _loops_at(request: web.Request, page_number: int) -> bool:
    """Whether page ``page_number`` (1 = the first) must point back at itself."""
    loop_after = request.app[CONFIG_KEY].misbehaviour.loop_after_pages
    return 0 < loop_after <= page_number


def _page_url(request: web.Request, changes: Mapping[str, int], *, is_next: bool) -> str:
    """The request's URL with ``changes`` to its query, credential parameters left out."""
    config = request.app[CONFIG_KEY]
    hidden = config.auth.credential_params
    query = [(name, value) for name, value in request.query.items() if name not in hidden]
    query = [(name, str(changes[name]) if name in changes else value) for name, value in query]
    query += [(name, str(value)) for name, value in changes.items() if name not in request.query]
    url = request.url.with_query(query)
    foreign = config.misbehaviour.foreign_next_url
    if is_next and foreign is not None:
        url = URL(foreign).origin().with_path(url.path).with_query(query)
    return str(url)


# -- offset ------------------------------------------------------------------------------------


def offset_page(request: web.Request) -> Page:
    dataset = request.app[DATASET_KEY]
    view, total = _views(request)
    offset = int_param(request, "offset", default=0)
    limit = page_size_param(request, "limit", request.app[CONFIG_KEY].page_size)
    served = view[offset : offset + limit]
    return Page(
        served,
        request_key(request),
        lambda: {"data": {"items": _records(dataset, served)}, "meta": {"total": _total(request, total)}},
    )


# -- page number -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _NumberedRequest:
    """A validated page-number request (``/pages/items`` and ``/link/items``)."""

    view: range
    total: int
    served: range
    page: int
    per_page: int
    page_number: int  # 1 for the first page, whatever ``first_page`` is


def _numbered_request(request: web.Request) -> _NumberedRequest:
    first = request.app[CONFIG_KEY].first_page
    view, total = _views(request)
    page = int_param(request, "page", default=first, minimum=first)
    per_page = page_size_param(request, "per_page", request.app[CONFIG_KEY].page_size)
    start = (page - first) * per_page
    return _NumberedRequest(view, total, view[start : start + per_page], page, per_page, page - first + 1)


def numbered_page(request: web.Request) -> Page:
    dataset = request.app[DATASET_KEY]
    asked = _numbered_request(request)
    total_pages = -(-asked.total // asked.per_page)
    return Page(
        asked.served,
        request_key(request),
        lambda: {
            "results": _records(dataset, asked.served),
            "total_records": _total(request, asked.total),
            "total_pages": _total(request, total_pages),
        },
    )


# -- cursor token ------------------------------------------------------------------------------


def _cursor_check(seed: int, offset: int, page_number: int) -> str:
    return f"{derived_int('cursor', seed, offset, page_number) % 16**8:08x}"


def encode_cursor(seed: int, offset: int, page_number: int) -> str:
    """An opaque cursor naming where the next page starts (and which page it is)."""
    raw = f"{offset}.{page_number}.{_cursor_check(seed, offset, page_number)}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(seed: int, cursor: str) -> tuple[int, int]:
    """(offset, page number) of a cursor this API issued; BadRequest otherwise."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        offset_text, page_text, check = raw.split(".")
        offset, page_number = int(offset_text), int(page_text)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        offset, page_number, check = -1, 0, ""
    if offset < 0 or page_number < 1 or check != _cursor_check(seed, offset, page_number):
        raise BadRequest("query parameter 'cursor' is not a cursor this API issued")
    return offset, page_number


def cursor_page(request: web.Request) -> Page:
    config = request.app[CONFIG_KEY]
    dataset = request.app[DATASET_KEY]
    view, _ = _views(request)
    limit = page_size_param(request, "limit", config.page_size)
    cursor = request.query.get("cursor", "")
    offset, page_number = decode_cursor(config.seed, cursor) if cursor else (view.start, 1)
    start = min(max(offset, view.start), view.stop)
    served = range(start, min(start + limit, view.stop))
    next_cursor: str | None = None
    if _loops_at(request, page_number):
        next_cursor = encode_cursor(config.seed, start, page_number)
    elif served.stop < view.stop:
        next_cursor = encode_cursor(config.seed, served.stop, page_number + 1)
    return Page(
        served,
        request_key(request),
        lambda: {"items": _records(dataset, served), "next_cursor": next_cursor},
    )


# -- has_more + last key -----------------------------------------------------------------------


def has_more_page(request: web.Request) -> Page:
    config = request.app[CONFIG_KEY]
    dataset = request.app[DATASET_KEY]
    view, _ = _views(request)
    limit = page_size_param(request, "limit", config.page_size)
    after = request.query.get("after")
    start = view.start
    if after is not None:
        start = max(start, dataset.first_offset_with_id_above(int_param(request, "after"), view.stop))
    page_number = (start - view.start) // limit + 1
    if _loops_at(request, page_number - 1):
        # Page k again instead of page k + 1: the client sends the same ``after`` forever.
        start = view.start + (config.misbehaviour.loop_after_pages - 1) * limit
    served = range(start, min(start + limit, view.stop))
    has_more = served.stop < view.stop or _loops_at(request, page_number)
    return Page(
        served,
        request_key(request),
        lambda: {"records": _records(dataset, served), "has_more": has_more},
    )


# -- next URL in the body ----------------------------------------------------------------------


def next_in_body_page(request: web.Request) -> Page:
    dataset = request.app[DATASET_KEY]
    view, _ = _views(request)
    offset = int_param(request, "offset", default=0)
    limit = page_size_param(request, "limit", request.app[CONFIG_KEY].page_size)
    served = view[offset : offset + limit]
    next_url: str | None = None
    if _loops_at(request, offset // limit + 1):
        next_url = _page_url(request, {"offset": offset, "limit": limit}, is_next=True)
    elif offset + limit < len(view):
        next_url = _page_url(request, {"offset": offset + limit, "limit": limit}, is_next=True)
    return Page(
        served,
        request_key(request),
        lambda: {"items": _records(dataset, served), "links": {"next": next_url}},
    )


# -- Link header -------------------------------------------------------------------------------


def link_header_page(request: web.Request) -> Page:
    dataset = request.app[DATASET_KEY]
    first = request.app[CONFIG_KEY].first_page
    asked = _numbered_request(request)
    page, per_page = asked.page, asked.per_page
    links: list[tuple[str, int, bool]] = []  # (rel, page, is_next), in GitHub's order
    if _loops_at(request, asked.page_number):
        links.append(("next", page, True))
    elif asked.page_number * per_page < len(asked.view):
        links.append(("next", page + 1, True))
    if not request.app[CONFIG_KEY].misbehaviour.endless:
        links.append(("last", first + max(0, -(-len(asked.view) // per_page) - 1), False))
    links.append(("first", first, False))
    if page > first:
        links.append(("prev", page - 1, False))
    header = ", ".join(
        f'<{_page_url(request, {"page": target, "per_page": per_page}, is_next=is_next)}>; rel="{rel}"'
        for rel, target, is_next in links
    )
    return Page(
        asked.served, request_key(request), lambda: _records(dataset, asked.served), headers={"Link": header}
    )


def add_routes(app: web.Application) -> None:
    for path, build_page in (
        ("/offset/items", offset_page),
        ("/pages/items", numbered_page),
        ("/cursor/items", cursor_page),
        ("/cursor-has-more/items", has_more_page),
        ("/next-body/items", next_in_body_page),
        ("/link/items", link_header_page),
    ):
        app.router.add_get(path, data_endpoint(build_page))
