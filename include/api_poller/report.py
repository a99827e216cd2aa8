"""The job summary the report step publishes (and fails on, if pages are missing)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from api_poller.status import PageState, merge_page_statuses, summarize
from api_poller.storage import processed_prefix, s3_uri


def job_summary(
    *,
    job_id: str,
    total_pages: int,
    total_records: int,
    processed_bucket: str,
    published_statuses: Iterable[Mapping[str, Any] | None],
) -> dict[str, Any]:
    latest = merge_page_statuses(published_statuses)
    failed = {
        page: record.get("reason", "unknown")
        for page, record in sorted(latest.items())
        if record["state"] == PageState.FAILED_TO_COMPLETE
    }
    return {
        "jobId": job_id,
        "progress": summarize(latest, total_pages),
        "totalRecords": total_records,
        "recordsWritten": sum(
            int(record.get("records", 0))
            for record in latest.values()
            if record["state"] == PageState.SUCCESSFULLY_COMPLETED
        ),
        "processedLocation": s3_uri(processed_bucket, processed_prefix(job_id)),
        "failedPages": failed,
        "complete": len(failed) == 0
        and sum(1 for r in latest.values() if r["state"] == PageState.SUCCESSFULLY_COMPLETED) == total_pages,
    }
