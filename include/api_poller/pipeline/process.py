"""Process one saved page: its records become newline-delimited JSON in the processed bucket."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from api_poller.aws.messaging import PagePointer
from api_poller.core.keys import processed_key

log = logging.getLogger(__name__)


class PageProcessingError(Exception):
    """The page cannot be processed; its message goes back to the queue (and in the end to the DLQ)."""


@dataclass(frozen=True)
class ProcessedPage:
    page_id: str
    key: str
    records: int
    # The raw object (bucket, key) to delete now that its records are written (see
    # delete_raw_pages); None when an earlier delivery already processed the page.
    raw: tuple[str, str] | None = None


def records_to_ndjson(document: Any, page_id: str) -> tuple[bytes, int]:
    """One JSON object per line; every record must be an object with an ``id``."""
    if not isinstance(document, dict) or not isinstance(document.get("payload"), list):
        raise PageProcessingError(f"{page_id}: raw payload has no 'payload' list")
    lines = []
    for position, record in enumerate(document["payload"]):
        if not isinstance(record, dict) or "id" not in record:
            raise PageProcessingError(f"{page_id}: record {position} has no 'id'")
        lines.append(json.dumps(record, separators=(",", ":"), ensure_ascii=False))
    body = ("\n".join(lines) + "\n").encode() if lines else b""
    return body, len(lines)


def _is_missing(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound")


def process_page(s3_client: Any, pointer: PagePointer, processed_bucket: str) -> ProcessedPage:
    """Write the page's records to its processed key. The raw object is deleted afterwards, as the
    seed does, by the caller: ``delete_raw_pages`` deletes a whole batch's in one call.

    Safe to repeat: SQS delivers at least once, so a message seen again after its raw object was
    already consumed is recognised by the processed object and changes nothing.
    """
    target = processed_key(pointer.job_id, pointer.page_id)
    try:
        raw = s3_client.get_object(Bucket=pointer.bucket, Key=pointer.key)["Body"].read()
    except ClientError as error:
        if not _is_missing(error):
            raise
        try:
            head = s3_client.head_object(Bucket=processed_bucket, Key=target)
        except ClientError as missing:
            if _is_missing(missing):
                raise PageProcessingError(f"{pointer.page_id}: raw object {pointer.key} is gone") from None
            raise
        records = int(head.get("Metadata", {}).get("records", 0))
        return ProcessedPage(pointer.page_id, target, records)
    try:
        document = json.loads(raw)
    except ValueError:
        raise PageProcessingError(f"{pointer.page_id}: raw payload is not JSON") from None
    body, records = records_to_ndjson(document, pointer.page_id)
    s3_client.put_object(
        Bucket=processed_bucket,
        Key=target,
        Body=body,
        ContentType="application/x-ndjson",
        Metadata={"records": str(records), "job-id": pointer.job_id},
    )
    return ProcessedPage(pointer.page_id, target, records, raw=(pointer.bucket, pointer.key))
