"""A task instance's page statuses kept in S3, so a new try of the task starts from them.

Airflow deletes a task instance's XComs when a new try starts (retry, clear), so the statuses it
had published vanish until it publishes again. The same document is written, compactly, to one
small S3 object per task instance at each publication (never per page); the new try reads it back
and republishes it at once, and the job API reads it for a task instance that has no status XCom.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from api_poller.aws.objects import is_missing_object
from api_poller.core.keys import status_checkpoint_key, status_checkpoint_prefix

if TYPE_CHECKING:
    from api_poller.aws.clients import S3Client

log = logging.getLogger(__name__)


class StatusCheckpoint:
    """``write(records)`` / ``read()`` of one task instance's checkpoint in the raw bucket."""

    def __init__(self, s3_client: S3Client, bucket: str, job_id: str, task_id: str, map_index: int) -> None:
        self._s3 = s3_client
        self._bucket = bucket
        self.key = status_checkpoint_key(job_id, task_id, map_index)

    def write(self, records: Mapping[str, Mapping[str, Any]]) -> None:
        """Store the document; a failure is only logged (the XCom was published, the checkpoint
        is a floor for the next try, not the record of truth)."""
        body = json.dumps(records, separators=(",", ":"), default=str).encode()
        try:
            self._s3.put_object(Bucket=self._bucket, Key=self.key, Body=body, ContentType="application/json")
        except (ClientError, BotoCoreError) as error:
            log.warning("could not write the status checkpoint %s: %s", self.key, error)

    def read(self) -> dict[str, dict[str, Any]] | None:
        """The last document written, or None if there is none (or it cannot be read)."""
        try:
            raw = self._s3.get_object(Bucket=self._bucket, Key=self.key)["Body"].read()
        except ClientError as error:
            if not is_missing_object(error):
                log.warning("could not read the status checkpoint %s: %s", self.key, error)
            return None
        except BotoCoreError as error:
            log.warning("could not read the status checkpoint %s: %s", self.key, error)
            return None
        try:
            document = json.loads(raw)
        except ValueError:
            log.warning("ignoring a malformed status checkpoint at %s", self.key)
            return None
        if not isinstance(document, dict) or not all(
            isinstance(record, dict) and "state" in record for record in document.values()
        ):
            log.warning("ignoring a malformed status checkpoint at %s", self.key)
            return None
        return document


def job_status_checkpoints(s3_client: S3Client, bucket: str, job_id: str) -> dict[str, list[dict[str, Any]]]:
    """Every checkpoint of a job, by task id (one LIST per 1,000, one GET each): for the report,
    which runs once per job, so a task instance whose last try never published still counts."""
    prefix = status_checkpoint_prefix(job_id)
    found: dict[str, list[dict[str, Any]]] = {}
    for listing in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in listing.get("Contents", []):
            task_id, _, index = item["Key"][len(prefix) :].removesuffix(".json").rpartition(".")
            if not task_id or not index.lstrip("-").isdigit():
                continue
            document = StatusCheckpoint(s3_client, bucket, job_id, task_id, int(index)).read()
            if document is not None:
                found.setdefault(task_id, []).append(document)
    return found
