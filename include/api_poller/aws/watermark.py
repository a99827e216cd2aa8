"""A source's incremental watermark: the highest cursor value a complete job wrote.

It lives in ``s3://<processed bucket>/state/<source>/watermark.json`` (``core.keys.watermark_key``)
as ``{"source", "value", "job_id", "updated_at"}``. The plan step reads it
(``read_watermark``); the report step calls ``advance_watermark`` with the job's highest cursor
value only once the job is complete; it never moves backwards (a lower or equal value leaves the
object as it is). A failed or incomplete job does not call it, so its watermark stays where it
was. Deleting the object resets the source: its next job starts from ``incremental.initial_value``
(or syncs everything when there is none).

One job of a source runs at a time (the source DAG's ``max_active_runs``), so read-then-write
needs no lock here.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from api_poller.aws.objects import read_object
from api_poller.core.errors import FatalError
from api_poller.core.incremental import CursorValue, is_later
from api_poller.core.keys import watermark_key

if TYPE_CHECKING:
    from api_poller.aws.clients import S3Client


@dataclass(frozen=True)
class Watermark:
    value: CursorValue
    job_id: str = ""
    updated_at: float = 0.0


def read_watermark(s3_client: S3Client, bucket: str, source: str) -> Watermark | None:
    """The source's watermark, or None when it has none (never synced, or reset)."""
    key = watermark_key(source)
    raw = read_object(s3_client, bucket, key)
    if raw is None:
        return None
    try:
        document: Any = json.loads(raw)
        value = document["value"]
    except (ValueError, KeyError, TypeError):
        raise FatalError(
            f"s3://{bucket}/{key} is not a watermark document; delete it to reset the source"
        ) from None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise FatalError(f"s3://{bucket}/{key} holds {value!r}, not a number or a string; delete it to reset")
    return Watermark(value, str(document.get("job_id", "")), float(document.get("updated_at", 0.0)))


def advance_watermark(
    s3_client: S3Client, bucket: str, source: str, value: CursorValue | None, *, job_id: str
) -> Watermark | None:
    """Move the watermark to ``value`` if it is later than the stored one; the watermark after.

    Call it only for a complete job. ``None`` (the job wrote no record with the field) changes
    nothing.
    """
    current = read_watermark(s3_client, bucket, source)
    if value is None or (current is not None and not is_later(value, current.value)):
        return current
    advanced = Watermark(value, job_id, time.time())
    document = {"source": source, "value": value, "job_id": job_id, "updated_at": advanced.updated_at}
    s3_client.put_object(
        Bucket=bucket,
        Key=watermark_key(source),
        Body=json.dumps(document).encode(),
        ContentType="application/json",
    )
    return advanced
