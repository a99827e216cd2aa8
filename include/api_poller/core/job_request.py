"""A job request: what a run asks for (URL, page size, concurrency, fetch tasks), validated."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from api_poller.core.errors import InvalidJobRequest
from api_poller.partner.client import validate_job_url
from api_poller.settings import PollerSettings

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
