"""Raw pages and error notes that failed pages left in the raw bucket, removed once old enough."""

from __future__ import annotations

import logging
import re
from collections import Counter
from datetime import datetime
from typing import Any

from api_poller.aws.clients import S3Client
from api_poller.operations.retention.deletion import delete_keys
from api_poller.operations.retention.timestamps import as_utc

log = logging.getLogger(__name__)

RAW_PREFIX = "jobs/"
# What failed pages leave in the raw bucket: the raw page, and the consumers' error notes; and what
# every job leaves: its tasks' page-status checkpoints.
LEFTOVER_KEY = re.compile(r"^jobs/(?P<job>[^/]+)/(?P<kind>raw|errors|status)/.+$")  # status: also its chunks/


def remove_expired_raw_payloads(
    s3_client: S3Client, bucket: str, *, cutoff: datetime, dry_run: bool = False
) -> dict[str, Any]:
    """Delete raw pages, error notes and status checkpoints (``jobs/<job>/{raw,errors,status}/``)
    older than ``cutoff``.

    Nothing else in the bucket is touched. A raw object outlives its page only when the page
    never completed (processing deletes it); an error note stays wherever processing failed once.
    """
    cutoff = as_utc(cutoff)
    expired: list[tuple[str, str, str]] = []  # (key, job, kind)
    recent = 0
    for listing in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=RAW_PREFIX):
        for item in listing.get("Contents", []):
            match = LEFTOVER_KEY.match(item["Key"])
            if not match:
                continue
            if as_utc(item["LastModified"]) < cutoff:
                expired.append((item["Key"], match["job"], match["kind"]))
            else:
                recent += 1
    if not dry_run:
        delete_keys(s3_client, bucket, [key for key, *_ in expired])
    jobs = Counter(job for _, job, _ in expired)
    kinds = Counter(kind for *_, kind in expired)
    log.info(
        "%s %d leftover objects in s3://%s/%s last modified before %s (%d newer kept), from %d jobs",
        "would delete" if dry_run else "deleted",
        len(expired),
        bucket,
        RAW_PREFIX,
        cutoff.isoformat(),
        recent,
        len(jobs),
    )
    return {
        "bucket": bucket,
        "cutoff": cutoff.isoformat(),
        "expired": len(expired),
        "deleted": 0 if dry_run else len(expired),
        "raw_pages": kinds["raw"],
        "error_notes": kinds["errors"],
        "kept_recent": recent,
        "jobs": dict(jobs.most_common(100)),
        "dry_run": dry_run,
    }
