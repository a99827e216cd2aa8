"""A job's partner pages as the job API lists them: planned, touched by tasks, where their data is."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from api_poller.core.keys import processed_key, s3_uri
from api_poller.core.lifecycle import PageState
from api_poller.core.planning import PageTask, page_id
from api_poller.jobs_api.models import PENDING, PageDetail


def _timestamp(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(value), tz=UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def planned_pages(plan_output: Any) -> dict[str, dict[str, Any]]:
    """Page id -> StartAt, Count and fetch map index, from the plan task's return value.

    A seed page has a ``start_at`` and a ``count``; a source's page request has only its number
    (its offset, page or cursor is in its query), so StartAt and Count are None for it. A walked
    job plans its first page only: the others appear as their statuses are recorded.
    """
    pages: dict[str, dict[str, Any]] = {}
    for map_index, entry in enumerate(plan_output if isinstance(plan_output, list) else []):
        for item in (entry or {}).get("batch", []):
            if "start_at" in item:
                page = PageTask.from_dict(item)
                pages[page.page_id] = {
                    "StartAt": page.start_at,
                    "Count": page.count,
                    "FetchMapIndex": map_index,
                }
            else:
                pages[page_id(int(item.get("page", 1)))] = {
                    "StartAt": None,
                    "Count": None,
                    "FetchMapIndex": map_index,
                }
    return pages


def page_detail(
    job_id: str,
    page: str,
    plan: Mapping[str, Any],
    record: Mapping[str, Any],
    state: str,
    raw_bucket: str,
    processed_bucket: str,
) -> PageDetail:
    """One page as the job API lists it: its ``plan`` entry (``planned_pages``), its latest
    ``record`` (details) and its ``state`` in the job (PENDING if no task recorded it)."""
    done_key = record.get("processed_key") or (
        processed_key(job_id, page) if state == PageState.SUCCESSFULLY_COMPLETED else None
    )
    return PageDetail(
        PageId=page,
        StartAt=plan.get("StartAt"),
        Count=plan.get("Count"),
        FetchMapIndex=plan.get("FetchMapIndex"),
        State=state,
        UpdatedAt=_timestamp(record.get("at")),
        Attempts=_int_or_none(record.get("attempts")),
        Receives=_int_or_none(record.get("receives")),
        Records=_int_or_none(record.get("records")),
        RawLocation=s3_uri(raw_bucket, record["raw_key"]) if record.get("raw_key") else None,
        ProcessedLocation=s3_uri(processed_bucket, done_key) if done_key else None,
        Error=record.get("error"),
        # A page redriven to success after failing keeps no failure reason.
        Reason=record.get("reason") if state == PageState.FAILED_TO_COMPLETE else None,
    )


def page_details(
    job_id: str,
    planned: Mapping[str, Mapping[str, Any]],
    statuses: Mapping[str, Mapping[str, Any]],
    raw_bucket: str,
    processed_bucket: str,
) -> list[PageDetail]:
    """Every page of ``planned`` and ``statuses`` (merged records, each with its state), in page order."""
    return [
        page_detail(
            job_id,
            page,
            planned.get(page, {}),
            statuses.get(page, {}),
            statuses.get(page, {}).get("state", PENDING),
            raw_bucket,
            processed_bucket,
        )
        for page in sorted(set(planned) | set(statuses))
    ]
