"""A published job's per-page record files, removed once the retention has passed.

After the publish step, ``jobs/<job>/records/`` in the processed bucket is an intermediate: the
snapshot holds the same records. The retention removes it, not the publish step, because until
then the job stays whole for everything that reads it: clearing and rerunning its report (which
reconciles against these files), a redrive, ``API_POLLER_RECONCILE=full``, and a publish retry
that must roll the pages up again. Only jobs with a published marker (``jobs/<job>/_published.json``,
the publish step's last write) older than the cutoff lose them; the marker stays, so a rerun of
the job still publishes nothing twice. Jobs of the seed DAG, whose records are their output, never
have a marker and are never touched.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any

from api_poller.aws.clients import S3Client
from api_poller.core.keys import processed_prefix
from api_poller.operations.retention.deletion import delete_keys
from api_poller.operations.retention.timestamps import as_utc

log = logging.getLogger(__name__)
MARKER = re.compile(r"^jobs/(?P<job>[^/]+)/_published\.json$")


def remove_published_page_records(
    s3_client: S3Client, bucket: str, *, cutoff: datetime, dry_run: bool = False
) -> dict[str, Any]:
    """Delete ``jobs/<job>/records/`` of jobs published before ``cutoff``; what went."""
    cutoff = as_utc(cutoff)
    jobs: list[str] = []
    for listing in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="jobs/"):
        for item in listing.get("Contents", []):
            match = MARKER.match(item["Key"])
            if match and as_utc(item["LastModified"]) < cutoff:
                jobs.append(match["job"])
    removed = 0
    for job in jobs:
        keys = [
            item["Key"]
            for listing in s3_client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=processed_prefix(job)
            )
            for item in listing.get("Contents", [])
        ]
        removed += len(keys)
        if not dry_run:
            delete_keys(s3_client, bucket, keys)
    log.info(
        "%s %d per-page record files of %d jobs published before %s",
        "would delete" if dry_run else "deleted",
        removed,
        len(jobs),
        cutoff.isoformat(),
    )
    return {
        "bucket": bucket,
        "cutoff": cutoff.isoformat(),
        "jobs": sorted(jobs),
        "files": removed,
        "dry_run": dry_run,
    }
