"""Process one saved page: its records become newline-delimited JSON in the processed bucket."""

from __future__ import annotations

import json
import logging
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from api_poller.aws.messaging import DEFAULT_PRIMARY_KEY, DEFAULT_RECORDS_PATH, PagePointer
from api_poller.aws.objects import is_missing_object
from api_poller.core.byte_budget import ByteBudget
from api_poller.core.errors import ResponseShapeError
from api_poller.core.incremental import CursorValue, CursorValueError, max_cursor_value
from api_poller.core.json_body import append_json, parse_json
from api_poller.core.keys import processed_key
from api_poller.partner.records import RecordsPath

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
    # The highest value of the pointer's incremental cursor field on the page (also stored as the
    # processed object's ``max-cursor`` metadata, JSON-encoded, so a repeat delivery finds it).
    max_cursor: CursorValue | None = None
    # The bytes written (0 when an earlier delivery wrote them).
    bytes: int = 0


@dataclass(frozen=True)
class PageRecords:
    """A page's records as NDJSON, their count, and the highest incremental cursor value."""

    body: bytearray  # written in place and handed to S3 as is (one copy of the page fewer)
    count: int
    max_cursor: CursorValue | None = None


def _records_of(document: Any, page_id: str, records_path: str) -> list[Any]:
    if records_path == DEFAULT_RECORDS_PATH:  # the seed's protocol, with its own message
        if not isinstance(document, dict) or not isinstance(document.get("payload"), list):
            raise PageProcessingError(f"{page_id}: raw payload has no 'payload' list")
        return list(document["payload"])
    try:
        return RecordsPath.parse(records_path).extract(document)
    except (ValueError, ResponseShapeError) as error:
        raise PageProcessingError(f"{page_id}: {error}") from None


def read_page_records(
    document: Any,
    page_id: str,
    *,
    records_path: str = DEFAULT_RECORDS_PATH,
    primary_key: str | None = DEFAULT_PRIMARY_KEY,
    cursor_field: str | None = None,
    standard: bool = False,
) -> PageRecords:
    """One JSON object per line from the records at ``records_path``; each record must carry
    ``primary_key`` when one is declared (None: any object will do, reconciliation counts only).
    ``standard``: the document holds no NaN or Infinity (see ``core.json_body.parse_json``)."""
    # Written line by line into one buffer (no list of lines, joined text and its encoding: each a
    # copy of the page).
    out = bytearray()
    records = _records_of(document, page_id, records_path)
    for position, record in enumerate(records):
        if not isinstance(record, dict):
            raise PageProcessingError(f"{page_id}: record {position} is not an object")
        if primary_key is not None and primary_key not in record:
            raise PageProcessingError(f"{page_id}: record {position} has no {primary_key!r}")
        append_json(out, record, standard=standard)
        out += b"\n"
    max_cursor = None
    if cursor_field is not None:
        try:
            max_cursor = max_cursor_value(records, cursor_field)
        except CursorValueError as error:
            raise PageProcessingError(f"{page_id}: {cursor_field}: {error}") from None
    return PageRecords(out, len(records), max_cursor)


def records_to_ndjson(
    document: Any,
    page_id: str,
    records_path: str = DEFAULT_RECORDS_PATH,
    primary_key: str | None = DEFAULT_PRIMARY_KEY,
) -> tuple[bytes, int]:
    """One JSON object per line; by default (the seed's protocol) every record of ``payload``
    must be an object with an ``id``."""
    page = read_page_records(document, page_id, records_path=records_path, primary_key=primary_key)
    return bytes(page.body), page.count


def process_page(
    s3_client: Any, pointer: PagePointer, processed_bucket: str, budget: ByteBudget | None = None
) -> ProcessedPage:
    """Write the page's records to its processed key. The raw object is deleted afterwards, as the
    seed does, by the caller: ``delete_raw_pages`` deletes a whole batch's in one call.

    Safe to repeat: SQS delivers at least once, so a message seen again after its raw object was
    already consumed is recognised by the processed object and changes nothing.

    With ``budget`` (shared by the task's workers), the raw object's size is reserved before it is
    read and held until its records are written: the pages a task holds stay within its bytes.
    """
    target = processed_key(pointer.job_id, pointer.page_id)
    try:
        response = s3_client.get_object(Bucket=pointer.bucket, Key=pointer.key)
    except ClientError as error:
        if not is_missing_object(error):
            raise
        try:
            head = s3_client.head_object(Bucket=processed_bucket, Key=target)
        except ClientError as missing:
            if is_missing_object(missing):
                raise PageProcessingError(f"{pointer.page_id}: raw object {pointer.key} is gone") from None
            raise
        metadata = head.get("Metadata", {})
        records = int(metadata.get("records", 0))
        return ProcessedPage(pointer.page_id, target, records, max_cursor=_stored_cursor(metadata))
    size = int(response.get("ContentLength") or 0)
    with budget.reserved(size) if budget is not None else nullcontext(0):
        try:
            return _write_records(s3_client, pointer, response["Body"], processed_bucket, target)
        finally:
            response["Body"].close()


def _write_records(
    s3_client: Any, pointer: PagePointer, raw_body: Any, processed_bucket: str, target: str
) -> ProcessedPage:
    # Each copy of the page goes as soon as the next is made: the raw bytes once parsed, the
    # parsed records once written out (a page is held about twice, not five times).
    raw = raw_body.read()
    try:
        document, standard = parse_json(raw)
    except ValueError:
        raise PageProcessingError(f"{pointer.page_id}: raw payload is not JSON") from None
    del raw
    page = read_page_records(
        document,
        pointer.page_id,
        records_path=pointer.records_path,
        primary_key=pointer.primary_key,
        cursor_field=pointer.cursor_field,
        standard=standard,
    )
    del document
    metadata = {"records": str(page.count), "job-id": pointer.job_id}
    if page.max_cursor is not None:
        metadata["max-cursor"] = json.dumps(page.max_cursor)
    s3_client.put_object(
        Bucket=processed_bucket,
        Key=target,
        Body=page.body,
        ContentType="application/x-ndjson",
        Metadata=metadata,
    )
    return ProcessedPage(
        pointer.page_id,
        target,
        page.count,
        raw=(pointer.bucket, pointer.key),
        max_cursor=page.max_cursor,
        bytes=len(page.body),
    )


def _stored_cursor(metadata: dict[str, str]) -> CursorValue | None:
    text = metadata.get("max-cursor")
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, str | int | float) and not isinstance(value, bool) else None
