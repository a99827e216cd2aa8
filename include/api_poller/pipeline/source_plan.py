"""The plan step of a source's job: check the trigger's conf, read the first page, plan the rest.

``plan_source_job`` returns the plan as an XCom-able dict. It fetches the first page (through the
source's scoped credentials), checks its records path, then asks the paginator:

* ``mode: "planned"``: the first response tells the total (offset / page number with a total
  path); ``batches`` hold the requests of pages 1..N, split over mapped fetch tasks. Page 1 is in
  the first batch: the plan step writes nothing (a job that cannot start leaves no trace), so the
  fetch task saves page 1 like every other page, at the cost of requesting it twice.
* ``mode: "walk"``: the total is unknown (cursor, next link, no total path); one fetch task walks
  from page 1 (``batches == [[page 1]]``), saving and enqueueing each page as it arrives.

The conf may carry ``params`` (only the source's ``overridable_params``), ``full_refresh``,
``concurrency`` and ``fetch_tasks``; anything else is refused by name. The host, path and
credentials come from the source and its Connection only. For an incremental source, the
watermark (or ``initial_value``) minus ``lookback`` is sent in ``incremental.param`` unless the
conf asks for a full refresh.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from api_poller.core.errors import InvalidJobRequest, ResponseShapeError, SourceError
from api_poller.core.incremental import CursorValue, minus_lookback
from api_poller.core.job_request import MAX_CONCURRENCY
from api_poller.core.planning import choose_fetch_tasks, share_concurrency, share_rate, split_evenly
from api_poller.partner.auth import HttpConnection, connection_origin, credentials_for, source_url
from api_poller.partner.paginators import PageRequest, base_request, paginator_for
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
        planned = paginator.plan(first.response())
    except ResponseShapeError as error:
        raise ResponseShapeError(f"source {spec.name!r}, first page: {error}") from None
    if planned is None:
        mode, requests, total_pages = MODE_WALK, [first_request], None
        tasks = 1
    else:
        mode, requests = MODE_PLANNED, [first_request, *planned]
        total_pages = len(requests)
        tasks = choose_fetch_tasks(total_pages, request.concurrency, request.fetch_tasks)
    batches = split_evenly([page.to_dict() for page in requests], tasks)
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
