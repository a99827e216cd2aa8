"""The plan step of a source's job: check the trigger's conf, read the first page, plan the rest.

``plan_source_job`` returns the plan as an XCom-able dict. It fetches the first page (through the
source's scoped credentials), checks its records path, then asks the paginator:

* ``mode: "planned"``: the first response tells the total (offset / page number with a total
  path); pages 1..N are split over mapped fetch tasks, each batch a ``SourceBatch`` dict: its first
  and last page numbers and the paginator's ``PageRule`` (page n's request from the base request),
  so the plan's size does not grow with N. Page 1 is in the first batch: the plan step writes
  nothing (a job that cannot start leaves no trace), so the fetch task saves page 1 like every
  other page, at the cost of requesting it twice.
* ``mode: "walk"``: the total is unknown (cursor, next link, no total path); one fetch task walks
  from page 1 (one batch of page 1 without a rule), saving and enqueueing each page as it arrives.

``batch_requests`` makes a batch's requests as they are read; it also reads the per-page request
lists of plans made before batches were ranges.

The conf may carry ``params`` (only the source's ``overridable_params``), ``full_refresh``,
``concurrency`` and ``fetch_tasks``; anything else is refused by name. The host, path and
credentials come from the source and its Connection only. For an incremental source, the
watermark (or ``initial_value``) minus ``lookback`` is sent in ``incremental.param`` unless the
conf asks for a full refresh.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

import aiohttp

from api_poller.core.errors import InvalidJobRequest, ResponseShapeError, SourceError
from api_poller.core.incremental import CursorValue, minus_lookback
from api_poller.core.job_request import MAX_CONCURRENCY
from api_poller.core.planning import choose_fetch_tasks, share_concurrency, share_rate, split_positions
from api_poller.partner.auth import HttpConnection, connection_origin, credentials_for, source_url
from api_poller.partner.paginators import PageRequest, PageRule, base_request, paginator_for
from api_poller.partner.source_client import SourceClient, SourcePage
from api_poller.settings import PollerSettings
from api_poller.sources.spec import SourceSpec

CONF_KEYS = ("params", "full_refresh", "concurrency", "fetch_tasks")
MODE_PLANNED = "planned"
MODE_WALK = "walk"


@dataclass(frozen=True)
class SourceJobRequest:
    """The trigger's conf, checked against the source."""

    overrides: Mapping[str, str]
    full_refresh: bool
    concurrency: int
    fetch_tasks: int | None


@dataclass(frozen=True)
class SourceBatch:
    """A fetch task's pages ``first_page``..``last_page`` and the rule that makes their requests
    (None for a walk, whose next request comes from each response)."""

    first_page: int
    last_page: int
    rule: PageRule | None

    def __post_init__(self) -> None:
        if not 1 <= self.first_page <= self.last_page:
            raise ValueError(f"not a batch of pages: {self.first_page}..{self.last_page}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "first_page": self.first_page,
            "last_page": self.last_page,
            "page_rule": None if self.rule is None else self.rule.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SourceBatch:
        rule = data.get("page_rule")
        return cls(
            int(data["first_page"]),
            int(data["last_page"]),
            None if rule is None else PageRule.from_dict(rule),
        )


@dataclass(frozen=True)
class PlannedRequests(Sequence[PageRequest]):
    """A planned batch's requests, made from the base request as they are read."""

    base: PageRequest
    rule: PageRule
    pages: range

    @overload
    def __getitem__(self, position: int) -> PageRequest: ...
    @overload
    def __getitem__(self, position: slice) -> list[PageRequest]: ...
    def __getitem__(self, position: int | slice) -> PageRequest | list[PageRequest]:
        if isinstance(position, slice):
            return [self.rule.request(self.base, page) for page in self.pages[position]]
        return self.rule.request(self.base, self.pages[position])

    def __len__(self) -> int:
        return len(self.pages)

    def __iter__(self) -> Iterator[PageRequest]:
        return (self.rule.request(self.base, page) for page in self.pages)


def batch_requests(base: Mapping[str, Any], batch: Any) -> Sequence[PageRequest]:
    """A planned fetch task's requests from its ``base_request`` and ``batch`` arguments: a
    ``SourceBatch`` dict, or the request dicts of a plan made before batches were ranges."""
    if isinstance(batch, list):
        return [PageRequest.from_dict(request) for request in batch]
    if not isinstance(batch, Mapping):
        raise ValueError(f"a fetch task's batch must be a mapping or a list, got {type(batch).__name__}")
    planned = SourceBatch.from_dict(batch)
    if planned.rule is None:
        raise ValueError(f"batch {planned.first_page}..{planned.last_page} has no page rule: it is walked")
    return PlannedRequests(
        PageRequest.from_dict(base), planned.rule, range(planned.first_page, planned.last_page + 1)
    )


def _positive_int(conf: Mapping[str, Any], name: str, high: int) -> int | None:
    value = conf.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise InvalidJobRequest(f"conf {name} must be a whole number from 1 to {high}, got {value!r}")
    return value


def _query_text(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise InvalidJobRequest(f"conf params.{name} must be a string or a number, got {value!r}")


def parse_source_conf(
    spec: SourceSpec, conf: Mapping[str, Any] | None, settings: PollerSettings
) -> SourceJobRequest:
    """The job's choices from a trigger's conf; InvalidJobRequest names what is refused."""
    conf = conf or {}
    if not isinstance(conf, Mapping):
        raise InvalidJobRequest(f"conf must be a mapping, got {type(conf).__name__}")
    unknown = sorted(str(key) for key in conf if key not in CONF_KEYS)
    if unknown:
        hint = ""
        if any(key in ("url", "host", "base_url", "path") for key in unknown):
            hint = f"; the URL of source {spec.name!r} comes from its file and its Connection only"
        raise InvalidJobRequest(
            f"conf has unknown keys {', '.join(unknown)} (known: {', '.join(CONF_KEYS)}){hint}"
        )
    params = conf.get("params") or {}
    if not isinstance(params, Mapping):
        raise InvalidJobRequest(f"conf params must be a mapping, got {type(params).__name__}")
    overrides: dict[str, str] = {}
    for name, value in params.items():
        if name not in spec.overridable_params:
            allowed = ", ".join(spec.overridable_params) or "none"
            raise InvalidJobRequest(
                f"conf params.{name}: source {spec.name!r} does not let a trigger set {name!r} "
                f"(overridable_params: {allowed})"
            )
        if value is not None:
            overrides[str(name)] = _query_text(str(name), value)
    full_refresh = conf.get("full_refresh", False)
    if not isinstance(full_refresh, bool):
        raise InvalidJobRequest(f"conf full_refresh must be true or false, got {full_refresh!r}")
    concurrency = (
        _positive_int(conf, "concurrency", MAX_CONCURRENCY)
        or spec.concurrency
        or settings.default_concurrency
    )
    fetch_tasks = _positive_int(conf, "fetch_tasks", MAX_CONCURRENCY) or (
        settings.default_fetch_tasks or None
    )
    return SourceJobRequest(overrides, full_refresh, concurrency, fetch_tasks)


def incremental_value(
    spec: SourceSpec, watermark: CursorValue | None, full_refresh: bool
) -> tuple[str, str] | None:
    """The (parameter, value) that asks the API for what changed since the watermark, or None."""
    incremental = spec.incremental
    if incremental is None or full_refresh:
        return None
    start = watermark if watermark is not None else incremental.initial_value
    if start is None:
        return None
    value = minus_lookback(start, incremental.lookback) if watermark is not None else start
    text = str(value)
    if incremental.filter_template is not None:
        text = incremental.filter_template.replace("{value}", text)
    return incremental.param, text


def source_base_request(
    spec: SourceSpec, connection: HttpConnection, request: SourceJobRequest, watermark: CursorValue | None
) -> PageRequest:
    """The request every page of the job starts from: URL, fixed params, overrides, watermark."""
    params = {**spec.params, **request.overrides}
    since = incremental_value(spec, watermark, request.full_refresh)
    if since is not None:
        params[since[0]] = since[1]
    return base_request(source_url(connection, spec.path), params)


def source_connection(spec: SourceSpec) -> HttpConnection:
    """The source's Airflow Connection; a missing one is a SourceError naming the file and field
    (rather than Airflow's own exception), so the plan step fails with a clear reason."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        connection: HttpConnection = BaseHook.get_connection(spec.connection_id)
    except AirflowNotFoundException:
        raise SourceError(
            spec.file,
            "connection_id",
            f"Airflow Connection {spec.connection_id!r} does not exist: create it (an HTTP Connection with "
            "the API's scheme, host, port and credentials) before running the source",
        ) from None
    return connection


async def _first_page(
    spec: SourceSpec, connection: HttpConnection, first: PageRequest, settings: PollerSettings
) -> SourcePage:
    credentials = credentials_for(connection, spec.auth)
    async with aiohttp.ClientSession() as session:
        return await SourceClient.for_source(session, credentials, spec, settings).fetch(first)


def plan_source_job(
    spec: SourceSpec,
    job_id: str,
    conf: Mapping[str, Any] | None,
    settings: PollerSettings,
    connection: HttpConnection,
    watermark: CursorValue | None,
) -> dict[str, Any]:
    """Check the conf, read the first page and plan the job (see the module's docstring).

    Raises a FatalError subclass with a clear message for bad input (conf, Connection, a records
    path that matches nothing, a total that is not a number) before anything is written.
    """
    request = parse_source_conf(spec, conf, settings)
    origin = connection_origin(connection)
    base = source_base_request(spec, connection, request, watermark)
    paginator = paginator_for(spec.paginator, base, origin=origin, max_pages=spec.max_pages)
    first_request = paginator.first_request()
    try:
        first = asyncio.run(_first_page(spec, connection, first_request, settings))
        total_pages = paginator.planned_page_count(first.response())
    except ResponseShapeError as error:
        raise ResponseShapeError(f"source {spec.name!r}, first page: {error}") from None
    if total_pages is None:
        mode, rule, pages, tasks = MODE_WALK, None, 1, 1
    else:
        mode, rule, pages = MODE_PLANNED, paginator.page_rule(), total_pages
        tasks = choose_fetch_tasks(total_pages, request.concurrency, request.fetch_tasks)
    # Page numbers start at 1: positions 0..pages-1 are pages 1..pages.
    batches = [
        SourceBatch(part.start + 1, part.stop, rule).to_dict() for part in split_positions(pages, tasks)
    ]
    since = incremental_value(spec, watermark, request.full_refresh)
    return {
        "job_id": job_id,
        "source": spec.name,
        "mode": mode,
        "base_request": base.to_dict(),
        "first_page_records": len(first.records),
        "total_pages": total_pages,
        "batches": batches,
        # The job's concurrency and rate cap are shared by its fetch tasks: the shares add up.
        "concurrency_shares": share_concurrency(request.concurrency, len(batches)),
        "rate_shares": share_rate(spec.requests_per_second, len(batches)),
        "records_path": spec.records.text,
        "primary_key": spec.primary_key,
        "cursor_field": spec.incremental.cursor_field if spec.incremental else None,
        "full_refresh": request.full_refresh,
        "incremental": None
        if since is None
        else {"param": since[0], "value": since[1], "watermark": watermark},
    }
