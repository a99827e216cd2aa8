"""Roll a job's per-page record files up into a snapshot's data files of about the target size.

Pages are read one at a time, in page order, from ``jobs/<job>/records/`` (processed bucket) and
appended to the current part; once a part holds the target size, the next page starts a new one.
Memory holds the pages read ahead (16) and, for Parquet, one row group; parts are built in
temporary files.
Parquet needs the columns before its first row: it reads the pages twice, once to observe the
schema and once to write. Part names are numbered in page order, so a rerun over the same pages
writes the same keys with the same bytes, and parts an earlier attempt left beyond the new last
one are deleted: the snapshot's folder holds exactly the files its manifest will list.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from api_poller.core.keys import processed_prefix, snapshot_part_key
from api_poller.output.formats import CONTENT_TYPES, EXTENSIONS, PartWriter, new_part_writer
from api_poller.output.schema import ParquetPlan, SchemaObserver

if TYPE_CHECKING:
    from api_poller.aws.clients import S3Client
    from api_poller.sources.spec import OutputFormat

log = logging.getLogger(__name__)
# Pages read ahead of the one being written: memory holds at most this many pages.
READ_AHEAD_PAGES = 16


@dataclass(frozen=True)
class SnapshotFile:
    key: str
    records: int
    bytes: int


@dataclass(frozen=True)
class Rollup:
    """What the roll-up wrote: the files in order, totals, and the schema of the records."""

    files: list[SnapshotFile]
    records: int
    pages: int
    fields: dict[str, list[str]]
    absent: dict[str, int]
    parquet: ParquetPlan | None


def page_record_keys(s3_client: S3Client, bucket: str, job_id: str) -> list[str]:
    """The job's per-page record files, in page order (``page-000002`` before ``page-000010``,
    and before a seven-digit ``page-1000000``)."""
    prefix = processed_prefix(job_id)
    keys = [
        item["Key"]
        for listing in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for item in listing.get("Contents", [])
        if item["Key"].endswith(".ndjson")
    ]
    return sorted(keys, key=lambda key: (len(key), key))


def read_page(s3_client: S3Client, bucket: str, key: str) -> tuple[list[bytes], list[dict[str, Any]]]:
    """A page's NDJSON lines (newline-terminated) and the records parsed from them."""
    body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    lines = [line + b"\n" for line in body.split(b"\n") if line]
    return lines, [json.loads(line) for line in lines]


def _pages(
    s3_client: S3Client, bucket: str, keys: list[str]
) -> Iterator[tuple[list[bytes], list[dict[str, Any]]]]:
    """The pages in order, read ahead ``READ_AHEAD_PAGES`` at a time: one GET after another would
    cost a round trip per page (tens of ms on S3), the job's whole length over."""
    with ThreadPoolExecutor(max_workers=READ_AHEAD_PAGES, thread_name_prefix="rollup-read") as pool:
        pending: deque[Future[tuple[list[bytes], list[dict[str, Any]]]]] = deque()
        for key in keys:
            pending.append(pool.submit(read_page, s3_client, bucket, key))
            if len(pending) >= READ_AHEAD_PAGES:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def observe_schema(s3_client: S3Client, bucket: str, keys: list[str]) -> SchemaObserver:
    """The schema of every record of the pages (a pass that keeps no record)."""
    observer = SchemaObserver()
    for _, records in _pages(s3_client, bucket, keys):
        for record in records:
            observer.observe(record)
    return observer


def roll_up_job(
    s3_client: S3Client,
    bucket: str,
    job_id: str,
    prefix: str,
    *,
    output_format: OutputFormat,
    target_bytes: int,
) -> Rollup:
    """Write the job's records under ``prefix`` as parts of ``output_format`` of about
    ``target_bytes`` each; the files written (an empty job writes none)."""
    keys = page_record_keys(s3_client, bucket, job_id)
    plan: ParquetPlan | None = None
    observer = SchemaObserver()
    if output_format == "parquet":
        observer = observe_schema(s3_client, bucket, keys)
        plan = observer.parquet_plan()
    files: list[SnapshotFile] = []
    writer: PartWriter | None = None
    for lines, records in _pages(s3_client, bucket, keys):
        if plan is None:
            for record in records:
                observer.observe(record)
        if writer is None:
            writer = new_part_writer(output_format, plan, target_bytes)
        writer.write_page(lines, records)
        if writer.bytes_written() >= target_bytes:
            files.append(_upload_part(s3_client, bucket, prefix, len(files), output_format, writer))
            writer = None
    if writer is not None and writer.records:
        files.append(_upload_part(s3_client, bucket, prefix, len(files), output_format, writer))
    _delete_strays(s3_client, bucket, prefix, {file.key for file in files})
    return Rollup(
        files=files,
        records=sum(file.records for file in files),
        pages=len(keys),
        fields=observer.summary(),
        absent=observer.absent_counts(),
        parquet=plan,
    )


def _upload_part(
    s3_client: S3Client, bucket: str, prefix: str, index: int, output_format: OutputFormat, writer: PartWriter
) -> SnapshotFile:
    key = snapshot_part_key(prefix, index, EXTENSIONS[output_format])
    with writer.finish() as body:
        size = body.seek(0, 2)
        body.seek(0)
        # A managed transfer: multipart above 8 MB, streamed from the file.
        s3_client.upload_fileobj(body, bucket, key, ExtraArgs={"ContentType": CONTENT_TYPES[output_format]})
    log.info("wrote s3://%s/%s: %d records, %d bytes", bucket, key, writer.records, size)
    return SnapshotFile(key, writer.records, size)


def _delete_strays(s3_client: S3Client, bucket: str, prefix: str, keep: set[str]) -> None:
    """Objects under the snapshot's prefix that this roll-up did not write (an earlier attempt's)."""
    strays = [
        item["Key"]
        for listing in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for item in listing.get("Contents", [])
        if item["Key"] not in keep
    ]
    for start in range(0, len(strays), 1000):
        batch = strays[start : start + 1000]
        s3_client.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True}
        )
    if strays:
        log.info("deleted %d stray objects under s3://%s/%s", len(strays), bucket, prefix)
