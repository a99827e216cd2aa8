"""The plan step: read the partner API's metadata and plan the job's pages, one batch per fetch task."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import aiohttp

from api_poller.core.job_request import JobRequest, parse_job_request
from api_poller.core.planning import (
    ApiMetadata,
    choose_fetch_tasks,
    choose_page_size,
    page_count,
    plan_batches,
    share_concurrency,
)
from api_poller.partner.client import fetch_metadata
from api_poller.partner.connection import check_job_url, client_options, retry_policy
from api_poller.settings import PollerSettings


async def _read_metadata(url: str, settings: PollerSettings) -> ApiMetadata:
    async with aiohttp.ClientSession() as session:
        return await fetch_metadata(session, url, retry_policy(settings), client_options(settings, url))


def plan_job(job_id: str, params: Mapping[str, Any], settings: PollerSettings) -> dict[str, Any]:
    """Read the API's metadata and plan the pages, grouped into one batch per fetch task."""
    request = parse_job_request(params, settings)
    check_job_url(request.url, settings)
    metadata = asyncio.run(_read_metadata(request.url, settings))
    return plan_from_metadata(job_id, request, metadata)


def plan_from_metadata(job_id: str, request: JobRequest, metadata: ApiMetadata) -> dict[str, Any]:
    """The plan of a checked request once the metadata is read: each fetch task's batch is a
    ``SeedBatch`` dict (its page range), the same size whatever the job's page count."""
    page_size = choose_page_size(metadata, request.page_size)
    total_pages = page_count(metadata, page_size)
    batches = plan_batches(
        metadata, page_size, choose_fetch_tasks(total_pages, request.concurrency, request.fetch_tasks)
    )
    return {
        "job_id": job_id,
        "url": request.url,
        "total_records": metadata.total_records,
        "page_size": page_size,
        "total_pages": total_pages,
        "batches": [batch.to_dict() for batch in batches],
        # The job's concurrency is shared by its fetch tasks: the shares add up to it.
        "concurrency_shares": share_concurrency(request.concurrency, len(batches)),
    }
