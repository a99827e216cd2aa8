"""A poller job: the validated request and its plan."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from api_poller.errors import InvalidJobRequest
from api_poller.partner_api import ClientOptions, RetryPolicy, fetch_metadata, validate_job_url
from api_poller.planning import (
    batch_pages,
    choose_fetch_tasks,
    choose_page_size,
    plan_pages,
    share_concurrency,
)
from api_poller.settings import PollerSettings
from api_poller.url_policy import check_url_allowed, parse_allowlist

MAX_CONCURRENCY = 512
MAX_FETCH_TASKS = 256


@dataclass(frozen=True)
class JobRequest:
    url: str
    page_size: int | None
    concurrency: int
    # None: chosen from the page count (see planning.choose_fetch_tasks).
    fetch_tasks: int | None


def _optional_int(params: Mapping[str, Any], name: str, default: int | None, maximum: int) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidJobRequest(f"{name} must be an integer, got {value!r}")
    if not 1 <= value <= maximum:
        raise InvalidJobRequest(f"{name} must be between 1 and {maximum}, got {value}")
    return value


def parse_job_request(params: Mapping[str, Any], settings: PollerSettings) -> JobRequest:
    """The job's request from the run's Params/conf, with a message naming any bad field."""
    url = params.get("url") or settings.default_url or None
    return JobRequest(
        url=validate_job_url(url),
        page_size=_optional_int(params, "page_size", None, 1_000_000),
        concurrency=_optional_int(params, "concurrency", settings.default_concurrency, MAX_CONCURRENCY),
        fetch_tasks=_optional_int(
            params, "fetch_tasks", settings.default_fetch_tasks or None, MAX_FETCH_TASKS
        ),
    )


def retry_policy(settings: PollerSettings) -> RetryPolicy:
    return RetryPolicy(
        attempts=settings.http_attempts,
        initial_seconds=settings.retry_initial_seconds,
        backoff_rate=settings.retry_backoff_rate,
        max_seconds=settings.retry_max_seconds,
        retry_after_max_seconds=settings.retry_after_max_seconds,
    )


def connection_headers(connection: Any) -> dict[str, str]:
    """Request headers from the partner API's Airflow connection (never logged or stored)."""
    headers = {str(k): str(v) for k, v in (connection.extra_dejson.get("headers") or {}).items()}
    if connection.login and connection.password:
        token = base64.b64encode(f"{connection.login}:{connection.password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    elif connection.password:
        headers["Authorization"] = f"Bearer {connection.password}"
    return headers


def client_options(settings: PollerSettings) -> ClientOptions:
    """Request options, with the credentials of ``API_POLLER_PARTNER_API_CONN_ID`` if set."""
    headers: dict[str, str] = {}
    if settings.partner_api_conn_id:
        from airflow.sdk import BaseHook

        headers = connection_headers(BaseHook.get_connection(settings.partner_api_conn_id))
    return ClientOptions(
        timeout=settings.http_timeout_seconds,
        max_response_bytes=settings.max_response_bytes,
        headers=headers,
    )


def check_job_url(url: str, settings: PollerSettings) -> None:
    """The SSRF guard, run before any request to the partner API."""
    check_url_allowed(url, parse_allowlist(settings.url_allowlist))


async def _read_metadata(url: str, settings: PollerSettings):
    async with aiohttp.ClientSession() as session:
        return await fetch_metadata(session, url, retry_policy(settings), client_options(settings))


def plan_job(job_id: str, params: Mapping[str, Any], settings: PollerSettings) -> dict[str, Any]:
    """Read the API's metadata and plan the pages, grouped into one batch per fetch task."""
    request = parse_job_request(params, settings)
    check_job_url(request.url, settings)
    metadata = asyncio.run(_read_metadata(request.url, settings))
    page_size = choose_page_size(metadata, request.page_size)
    pages = plan_pages(metadata, page_size)
    batches = batch_pages(pages, choose_fetch_tasks(len(pages), request.concurrency, request.fetch_tasks))
    return {
        "job_id": job_id,
        "url": request.url,
        "total_records": metadata.total_records,
        "page_size": page_size,
        "total_pages": len(pages),
        "batches": [[page.to_dict() for page in batch] for batch in batches],
        # The job's concurrency is shared by its fetch tasks: the shares add up to it.
        "concurrency_shares": share_concurrency(request.concurrency, len(batches)),
    }
