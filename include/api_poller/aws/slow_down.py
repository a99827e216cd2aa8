"""The job-wide "slow down until" signal, as one small S3 object that every fetch task reads.

A fetch task that gets a 429 writes the instant (epoch seconds) until which the job should pause;
the job's other tasks read it at most every couple of seconds (``partner.rate_limit``). S3 is
already shared by every task of a job, wherever it runs (another worker, another MWAA container),
and a read every 2 s per task costs next to nothing; last writer wins, and only a later instant
is ever written by a task, which is all a pause needs.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from api_poller.aws.objects import read_object
from api_poller.core.keys import slow_down_key

if TYPE_CHECKING:
    from api_poller.aws.clients import S3Client

log = logging.getLogger(__name__)


class S3SlowDownSignal:
    """``publish(until)`` / ``read()`` of one job's signal in the raw bucket."""

    def __init__(self, s3_client: S3Client, bucket: str, job_id: str) -> None:
        self._s3 = s3_client
        self._bucket = bucket
        self.key = slow_down_key(job_id)

    def publish(self, until: float) -> None:
        body = json.dumps({"slow_down_until": until}).encode()
        self._s3.put_object(Bucket=self._bucket, Key=self.key, Body=body, ContentType="application/json")

    def read(self) -> float | None:
        raw = read_object(self._s3, self._bucket, self.key)
        if raw is None:
            return None
        try:
            value = json.loads(raw)["slow_down_until"]
            return float(value)
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed slow-down signal at %s", self.key)
            return None
