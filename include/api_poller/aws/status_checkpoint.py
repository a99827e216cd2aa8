"""A task instance's page statuses kept in S3, so a new try of the task starts from them.

Airflow deletes a task instance's XComs when a new try starts (retry, clear), so the statuses it
had published vanish until it publishes again. Each publication (``core.lifecycle.Publication``:
the summary and the detail chunks that changed) is also written to S3, one object for the summary
and one per chunk, never per page; the new try reads them back and republishes them at once, and
the job API reads them for a task instance that has no status XCom.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from api_poller.aws.objects import is_missing_object
from api_poller.core.keys import status_checkpoint_chunk_key, status_checkpoint_key, status_checkpoint_prefix
from api_poller.core.status_document import TaskStatus, encode_chunk, read_chunk, read_summary

if TYPE_CHECKING:
    from api_poller.aws.clients import S3Client
    from api_poller.core.lifecycle import Publication

log = logging.getLogger(__name__)

StatusRecords = dict[str, dict[str, Any]]


class StatusCheckpoint:
    """``write(publication)`` / ``read_summary()`` / ``read_records()`` of one task instance's
    checkpoint in the raw bucket."""

    def __init__(self, s3_client: S3Client, bucket: str, job_id: str, task_id: str, map_index: int) -> None:
        self._s3 = s3_client
        self._bucket = bucket
        self._address = (job_id, task_id, map_index)
        self.key = status_checkpoint_key(job_id, task_id, map_index)

    def chunk_key(self, chunk: int) -> str:
        return status_checkpoint_chunk_key(*self._address, chunk)

    def write(self, publication: Publication) -> None:
        """Store the changed chunks, then the summary; a failure is only logged (the XCom was
        published, the checkpoint is a floor for the next try, not the record of truth)."""
        try:
            for chunk, records in publication.chunks.items():
                self._put(self.chunk_key(chunk), encode_chunk(records).encode())
            self._put(self.key, json.dumps(publication.summary, separators=(",", ":"), default=str).encode())
        except (ClientError, BotoCoreError) as error:
            log.warning("could not write the status checkpoint %s: %s", self.key, error)

    def _put(self, key: str, body: bytes) -> None:
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=body, ContentType="application/json")

    def _get(self, key: str) -> object | None:
        try:
            raw = self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        except ClientError as error:
            if not is_missing_object(error):
                log.warning("could not read the status checkpoint %s: %s", key, error)
            return None
        except BotoCoreError as error:
            log.warning("could not read the status checkpoint %s: %s", key, error)
            return None
        try:
            return json.loads(raw)
        except ValueError:
            log.warning("ignoring a malformed status checkpoint at %s", key)
            return None

    def read_summary(self) -> TaskStatus | None:
        """The last summary written (a checkpoint of the earlier format: its records), or None if
        there is none (or it cannot be read)."""
        document = self._get(self.key)
        if document is None:
            return None
        try:
            return read_summary(document)
        except ValueError:
            log.warning("ignoring a malformed status checkpoint at %s", self.key)
            return None

    def iter_chunks(self, chunks: Iterable[int]) -> Iterator[StatusRecords]:
        """The records of ``chunks`` (those that can be read), a chunk at a time."""
        for chunk in chunks:
            records = read_chunk(self._get(self.chunk_key(chunk)))
            if records is not None:
                yield records

    def read_chunks(self, chunks: Iterable[int]) -> StatusRecords:
        """The records of ``chunks`` (those that can be read), together."""
        found: StatusRecords = {}
        for records in self.iter_chunks(chunks):
            found.update(records)
        return found

    def read_records(self) -> StatusRecords | None:
        """Every record of the checkpoint (summary and all its chunks), or None if there is none."""
        summary = self.read_summary()
        if summary is None:
            return None
        if summary.records is not None:
            return summary.records
        return self.read_chunks(summary.chunks)

    def iter_records(self) -> Iterator[StatusRecords]:
        """The checkpoint's records a chunk at a time (nothing if there is none): for a reader that
        merges a whole job, which then never holds more than one chunk of a checkpoint."""
        summary = self.read_summary()
        if summary is None:
            return
        if summary.records is not None:
            yield summary.records
        else:
            yield from self.iter_chunks(summary.chunks)


def job_checkpoints(s3_client: S3Client, bucket: str, job_id: str) -> dict[str, list[StatusCheckpoint]]:
    """Every checkpoint of a job, by task id (one LIST per 1,000 objects; nothing read yet): for the
    report, which runs once per job, so a task instance whose last try never published still
    counts."""
    prefix = status_checkpoint_prefix(job_id)
    found: dict[str, list[StatusCheckpoint]] = {}
    for listing in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in listing.get("Contents", []):
            name = item["Key"][len(prefix) :]
            task_id, _, index = name.removesuffix(".json").rpartition(".")
            if "/" in name or not task_id or not index.lstrip("-").isdigit():
                continue  # a chunk (read through its summary) or not a checkpoint
            found.setdefault(task_id, []).append(
                StatusCheckpoint(s3_client, bucket, job_id, task_id, int(index))
            )
    return found
