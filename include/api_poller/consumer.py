"""The process step: an SqsSensor that consumes this job's page messages until all are settled.

The provider's SqsSensor deletes messages on reception, which would defeat the dead-letter queue.
Here a message is deleted only after its page was processed; a failing message is offered again
after a short delay and, after the queue's maxReceiveCount, SQS moves it to the DLQ, where this
sensor finds it and records the page as FailedToComplete. The sensor succeeds once every enqueued
page of the job is processed or dead-lettered, and times out (a setting) otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.amazon.aws.sensors.sqs import SqsSensor

from api_poller.messaging import batches_of, message_job_id, parse_message
from api_poller.processing import PageProcessingError, ProcessedPage, process_page
from api_poller.status import STATUS_XCOM_KEY, PageState, StatusRecorder
from api_poller.storage import processed_prefix, safe_job_id

RECEIVE_KWARGS = {
    "MaxNumberOfMessages": 10,
    "MessageAttributeNames": ["All"],
    "AttributeNames": ["ApproximateReceiveCount"],
}


class PageMessageSensor(SqsSensor):
    template_fields: Sequence[str] = (
        *SqsSensor.template_fields,
        "job_id",
        "expected_pages",
        "dead_letter_queue_url",
    )

    def __init__(
        self,
        *,
        job_id: str,
        expected_pages: Any,
        processed_bucket: str,
        dead_letter_queue_url: str,
        max_receive_count: int = 3,
        retry_delay_seconds: int = 5,
        drain_seconds: float = 30.0,
        workers: int = 8,
        status_flush_seconds: float = 1.0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("mode", "poke")
        super().__init__(delete_message_on_reception=False, deferrable=False, **kwargs)
        self.job_id = job_id
        self.expected_pages = expected_pages
        self.processed_bucket = processed_bucket
        self.dead_letter_queue_url = dead_letter_queue_url
        self.max_receive_count = max_receive_count
        self.retry_delay_seconds = retry_delay_seconds
        self.drain_seconds = drain_seconds
        self.workers = workers
        self.status_flush_seconds = status_flush_seconds
        self._recorder: StatusRecorder | None = None
        self._last_error: dict[str, str] = {}
        self._s3: Any = None

    # -- lifecycle -------------------------------------------------------------------------

    def _start(self, context: Any) -> StatusRecorder:
        ti = context["ti"]
        self._recorder = StatusRecorder(
            lambda value: ti.xcom_push(key=STATUS_XCOM_KEY, value=value),
            self.status_flush_seconds,
        )
        self._s3 = S3Hook(aws_conn_id=self.aws_conn_id).get_conn()
        self._attribute_job_id = safe_job_id(self.job_id)
        self._expected = set(self.expected_pages or [])
        # After a crash and retry, pages whose output already exists are done: S3 is the truth.
        for page in self._already_processed():
            self._recorder.mark(page, PageState.SUCCESSFULLY_COMPLETED, recovered=True)
        return self._recorder

    def _already_processed(self) -> list[str]:
        prefix = processed_prefix(self.job_id)
        paginator = self._s3.get_paginator("list_objects_v2")
        found = []
        for listing in paginator.paginate(Bucket=self.processed_bucket, Prefix=prefix):
            for item in listing.get("Contents", []):
                page = item["Key"][len(prefix) :].removesuffix(".ndjson")
                if page in self._expected:
                    found.append(page)
        return found

    def _pending(self) -> set[str]:
        recorder = self._recorder
        return {
            page for page in self._expected if not (recorder.state_of(page) or PageState.STARTED).is_final
        }

    def poke(self, context: Any) -> bool:
        recorder = self._recorder or self._start(context)
        deadline = time.monotonic() + self.drain_seconds
        # Keep draining while messages flow; give control back to the sensor loop when idle.
        while self._pending() and time.monotonic() < deadline:
            if not self._consume_once():
                break
        if self._pending() and self._last_error:
            self._account_dead_letters()
        recorder.flush()
        remaining = len(self._pending())
        self.log.info(
            "%d of %d pages of job %s still pending",
            remaining,
            len(self._expected),
            self.job_id,
        )
        return remaining == 0

    # -- the main queue --------------------------------------------------------------------

    def _consume_once(self) -> bool:
        """Receive one batch and settle it; False when the queue had nothing for us."""
        sqs = self.hook.conn
        response = sqs.receive_message(
            QueueUrl=self.sqs_queue,
            WaitTimeSeconds=self.wait_time_seconds,
            **RECEIVE_KWARGS,
        )
        messages = response.get("Messages", [])
        ours = [m for m in messages if message_job_id(m) == self._attribute_job_id]
        # Another job's messages: hand them back at once instead of hiding them for the timeout.
        self._change_visibility(self.sqs_queue, [m for m in messages if m not in ours], 0)
        if not ours:
            return False
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            outcomes = list(pool.map(self._process_message, ours))
        processed, failed = [], []
        for message, result in zip(ours, outcomes, strict=True):
            (processed if isinstance(result, ProcessedPage) else failed).append(message)
            self._record(message, result)
        # Delete only after processing: a message that failed stays and is retried by SQS.
        for batch in batches_of(processed):
            sqs.delete_message_batch(
                QueueUrl=self.sqs_queue,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
            )
        self._change_visibility(self.sqs_queue, failed, self.retry_delay_seconds)
        return True

    def _process_message(self, message: dict) -> ProcessedPage | str:
        """Process one page in a worker thread: the result, or why it failed."""
        try:
            return process_page(self._s3, parse_message(message), self.processed_bucket)
        except (PageProcessingError, ValueError) as exc:
            return str(exc)

    def _record(self, message: dict, result: ProcessedPage | str) -> None:
        page = message.get("MessageAttributes", {}).get("taskId", {}).get("StringValue", "?")
        receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1))
        if isinstance(result, ProcessedPage):
            self._recorder.mark(
                page,
                PageState.SUCCESSFULLY_COMPLETED,
                processed_key=result.key,
                records=result.records,
                receives=receives,
            )
            return
        self.log.warning("%s failed processing (receive %d): %s", page, receives, result)
        self._last_error[page] = result
        self._recorder.mark(page, PageState.ENQUEUED, receives=receives, error=result)

    # -- the dead-letter queue -------------------------------------------------------------

    def _account_dead_letters(self) -> None:
        """Record this job's dead-lettered pages as FailedToComplete, leaving them in the DLQ."""
        sqs = self.hook.conn
        seen: list[dict] = []
        for _ in range(10):
            response = sqs.receive_message(
                QueueUrl=self.dead_letter_queue_url,
                WaitTimeSeconds=0,
                VisibilityTimeout=30,
                **RECEIVE_KWARGS,
            )
            batch = response.get("Messages", [])
            if not batch:
                break
            seen.extend(batch)
            for message in batch:
                if message_job_id(message) != self._attribute_job_id:
                    continue
                page = message["MessageAttributes"]["taskId"]["StringValue"]
                if self._recorder.state_of(page) == PageState.FAILED_TO_COMPLETE:
                    continue
                error = self._last_error.get(page, "no error recorded by this consumer")
                self._recorder.mark(
                    page,
                    PageState.FAILED_TO_COMPLETE,
                    reason=f"dead-lettered after {self.max_receive_count} receives: {error}",
                    dead_letter_message_id=message["MessageId"],
                )
        # Leave every dead letter where it was, visible, for inspection and redrive.
        self._change_visibility(self.dead_letter_queue_url, seen, 0)

    def _change_visibility(self, queue_url: str, messages: list[dict], seconds: int) -> None:
        for batch in batches_of(messages):
            self.hook.conn.change_message_visibility_batch(
                QueueUrl=queue_url,
                Entries=[
                    {
                        "Id": str(i),
                        "ReceiptHandle": m["ReceiptHandle"],
                        "VisibilityTimeout": seconds,
                    }
                    for i, m in enumerate(batch)
                ],
            )
