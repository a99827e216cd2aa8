"""Why a job went wrong and how fast it went, from the job's merged status (no Airflow needed).

``failed_reasons`` groups a job's failed pages by their reason; ``timeline`` counts, per time
bucket, the pages whose latest record (``at``) falls in it: completed, failed, and the retries
those pages needed (fetch attempts and SQS receives beyond the first). Both read what the tasks'
status summaries carry (``core.status_document``), never every page's record.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

REASON_SAMPLE_SIZE = 5
TIMELINE_BUCKETS = 60  # about this many buckets, whatever the job's duration
# Bucket sizes a chart's axis reads well in (seconds): the smallest giving <= TIMELINE_BUCKETS.
NICE_BUCKET_SECONDS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)
UNKNOWN_REASON = "(no reason recorded)"


def failed_reasons(failures: Mapping[str, str | None]) -> list[dict[str, Any]]:
    """The FailedToComplete pages (page id -> reason, ``core.status_document.JobStatus.failures``)
    grouped by reason, most pages first (then by reason), each with up to REASON_SAMPLE_SIZE page
    ids (the first in page order)."""
    pages_by_reason: dict[str, list[str]] = defaultdict(list)
    for page in sorted(failures):
        reason = failures[page]
        pages_by_reason[str(reason) if reason else UNKNOWN_REASON].append(page)
    groups = sorted(pages_by_reason.items(), key=lambda item: (-len(item[1]), item[0]))
    return [
        {"Reason": reason, "Pages": len(pages), "Sample": pages[:REASON_SAMPLE_SIZE]}
        for reason, pages in groups
    ]


def bucket_seconds(duration: float) -> int:
    """The bucket size for a job that lasted ``duration`` seconds: about TIMELINE_BUCKETS buckets."""
    wanted = max(duration, 0.0) / TIMELINE_BUCKETS
    return next(
        (size for size in NICE_BUCKET_SECONDS if size >= wanted),
        math.ceil(wanted / NICE_BUCKET_SECONDS[-1]) * NICE_BUCKET_SECONDS[-1],
    )


def timeline(
    settled: Mapping[int, Sequence[int]], start: datetime | None, end: datetime | None
) -> dict[str, Any]:
    """Pages completed, failed and retried per bucket, from ``start`` (the run's start, else the
    first record; rounded down to a multiple of the bucket size) to ``end`` (the run's end or
    now, else the last record).

    ``settled`` is the tasks' merged histogram (``JobStatus.timeline_buckets``): epoch second ->
    [completed, failed, retries] of the pages whose latest record falls in it.
    """
    begin = start.timestamp() if start else min(settled, default=None)
    if begin is None:
        return {"Start": None, "BucketSeconds": None, "Buckets": []}
    last = max([end.timestamp() if end else begin, *settled])
    begin = min([begin, *settled])
    size = bucket_seconds(last - begin)
    # Buckets on multiples of their size: each then holds whole buckets of the histogram.
    first = begin // size * size
    count = int((last - first) // size) + 1
    buckets = [{"Completed": 0, "Failed": 0, "Retries": 0} for _ in range(count)]
    for second, (completed, failed, retries) in settled.items():
        bucket = buckets[max(0, min(int((second - first) // size), count - 1))]
        bucket["Completed"] += completed
        bucket["Failed"] += failed
        bucket["Retries"] += retries
    return {
        "Start": datetime.fromtimestamp(first, tz=UTC),
        "BucketSeconds": size,
        "Buckets": [
            {"At": datetime.fromtimestamp(first + index * size, tz=UTC), **bucket}
            for index, bucket in enumerate(buckets)
        ],
    }
