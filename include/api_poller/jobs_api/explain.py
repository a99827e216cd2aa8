"""Why a job went wrong and how fast it went, from the page records it left (no Airflow needed).

``failed_reasons`` groups a job's failed pages by their reason; ``timeline`` counts, per time
bucket, the pages whose latest record (``at``) falls in it: completed, failed, and the retries
those pages needed (fetch attempts and SQS receives beyond the first).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from api_poller.core.lifecycle import PageState

REASON_SAMPLE_SIZE = 5
TIMELINE_BUCKETS = 60  # about this many buckets, whatever the job's duration
# Bucket sizes a chart's axis reads well in (seconds): the smallest giving <= TIMELINE_BUCKETS.
NICE_BUCKET_SECONDS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)
UNKNOWN_REASON = "(no reason recorded)"


def failed_reasons(statuses: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The FailedToComplete pages grouped by reason, most pages first (then by reason), each with
    up to REASON_SAMPLE_SIZE page ids (the first in page order)."""
    pages_by_reason: dict[str, list[str]] = defaultdict(list)
    for page in sorted(statuses):
        record = statuses[page]
        if record.get("state") == PageState.FAILED_TO_COMPLETE:
            reason = record.get("reason")
            pages_by_reason[str(reason) if reason else UNKNOWN_REASON].append(page)
    groups = sorted(pages_by_reason.items(), key=lambda item: (-len(item[1]), item[0]))
    return [
        {"Reason": reason, "Pages": len(pages), "Sample": pages[:REASON_SAMPLE_SIZE]}
        for reason, pages in groups
    ]


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _retries(record: Mapping[str, Any]) -> int:
    extra = 0
    for key in ("attempts", "receives"):
        count = record.get(key)
        if isinstance(count, int) and not isinstance(count, bool) and count > 1:
            extra += count - 1
    return extra


def bucket_seconds(duration: float) -> int:
    """The bucket size for a job that lasted ``duration`` seconds: about TIMELINE_BUCKETS buckets."""
    wanted = max(duration, 0.0) / TIMELINE_BUCKETS
    return next(
        (size for size in NICE_BUCKET_SECONDS if size >= wanted),
        math.ceil(wanted / NICE_BUCKET_SECONDS[-1]) * NICE_BUCKET_SECONDS[-1],
    )


def timeline(
    statuses: Mapping[str, Mapping[str, Any]], start: datetime | None, end: datetime | None
) -> dict[str, Any]:
    """Pages completed, failed and retried per bucket, from ``start`` (the run's start, else the
    first record) to ``end`` (the run's end or now, else the last record)."""
    times = {page: at for page, record in statuses.items() if (at := _seconds(record.get("at"))) is not None}
    first = start.timestamp() if start else min(times.values(), default=None)
    if first is None:
        return {"Start": None, "BucketSeconds": None, "Buckets": []}
    last = max([end.timestamp() if end else first, *times.values()])
    first = min([first, *times.values()])
    size = bucket_seconds(last - first)
    count = int((last - first) // size) + 1
    buckets = [{"Completed": 0, "Failed": 0, "Retries": 0} for _ in range(count)]
    for page, at in times.items():
        record = statuses[page]
        bucket = buckets[min(int((at - first) // size), count - 1)]
        if record.get("state") == PageState.SUCCESSFULLY_COMPLETED:
            bucket["Completed"] += 1
        elif record.get("state") == PageState.FAILED_TO_COMPLETE:
            bucket["Failed"] += 1
        bucket["Retries"] += _retries(record)
    return {
        "Start": datetime.fromtimestamp(first, tz=UTC),
        "BucketSeconds": size,
        "Buckets": [
            {"At": datetime.fromtimestamp(first + index * size, tz=UTC), **bucket}
            for index, bucket in enumerate(buckets)
        ],
    }
