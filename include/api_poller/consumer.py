"""The process step: an SqsSensor that consumes page messages until all of its job's are settled.

The provider's SqsSensor deletes messages on reception, which would defeat the dead-letter queue.
Here a message is deleted only after its page was processed; a failing message is offered again
after a short delay and, after the queue's maxReceiveCount, SQS moves it to the DLQ, where this
sensor finds it and records the page as FailedToComplete with the error.

Like the seed's Lambda, every consumer processes whatever message it receives, whichever job it
belongs to: handing another job's message back would count as a receive and could dead-letter a
healthy page. Processing is idempotent and lands at a deterministic key, so each job learns about
pages another consumer processed from S3 (the processed object is the proof), and about failures
from the error note written next to the raw page. The sensor succeeds once every enqueued page of
its job is processed or dead-lettered, and times out (a setting) otherwise.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.amazon.aws.sensors.sqs import SqsSensor
from botocore.exceptions import ClientError

from api_poller.fetching import ProgressLog
from api_poller.messaging import PagePointer, batches_of, change_visibility, message_job_id, parse_message
from api_poller.processing import PageProcessingError, ProcessedPage, process_page
from api_poller.status import STATUS_XCOM_KEY, PageState, StatusRecorder
from api_poller.storage import processed_prefix, processing_error_key, safe_job_id, stored_page_ids

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
        raw_bucket: str,
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
        self.raw_bucket = raw_bucket
        self.dead_letter_queue_url = dead_letter_queue_url
        self.max_receive_count = max_receive_count
        self.retry_delay_seconds = retry_delay_seconds
        self.drain_seconds = drain_seconds
        self.workers = workers
        self.status_flush_seconds = status_flush_seconds
        self._recorder: StatusRecorder | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def _start(self, context: Any) -> StatusRecorder:
        ti = context["ti"]
        self._recorder = StatusRecorder(
            lambda value: ti.xcom_push(key=STATUS_XCOM_KEY, value=value),
            self.status_flush_seconds,
        )
        self._s3 = S3Hook(aws_conn_id=self.aws_conn_id).get_conn()
        self._attribute_job_id = safe_job_id(self.job_id)
        self._pending = set(self.expected_pages or [])
        self._progress = ProgressLog("process", len(self._pending))
        # After a crash and retry, or when other consumers helped: S3 holds the truth.
        self._collect_processed_elsewhere()
        return self._recorder

    def _settle(self, page: str, state: PageState, **details: Any) -> None:
        self._recorder.mark(page, state, **details)
        if page in self._pending:
            self._pending.discard(page)
            self._progress.advance()

    def poke(self, context: Any) -> bool:
        recorder = self._recorder or self._start(context)
        deadline = time.monotonic() + self.drain_seconds
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            # Keep draining while messages flow; give control back to the sensor loop when idle.
            while self._pending and time.monotonic() < deadline:
                if not self._consume_once(pool):
                    break
        if self._pending:
            self._collect_processed_elsewhere()
        if self._pending:
            self._account_dead_letters()
        recorder.flush()
        if self._pending:
            self.log.info("%d pages of job %s still pending", len(self._pending), self.job_id)
        return not self._pending

    # -- the main queue --------------------------------------------------------------------

    def _consume_once(self, pool: ThreadPoolExecutor) -> bool:
        """Receive one batch and settle it; False when the queue was empty."""
        sqs = self.hook.conn
        response = sqs.receive_message(
            QueueUrl=self.sqs_queue, WaitTimeSeconds=self.wait_time_seconds, **RECEIVE_KWARGS
        )
        messages = response.get("Messages", [])
        if not messages:
            return False
        outcomes = list(pool.map(self._process_message, messages))
        processed = [
            m for m, result in zip(messages, outcomes, strict=True) if isinstance(result, ProcessedPage)
        ]
        failed = [m for m, result in zip(messages, outcomes, strict=True) if isinstance(result, str)]
        for message, result in zip(messages, outcomes, strict=True):
            self._record(message, result)
        # Delete only after processing: a message that failed stays and is retried by SQS.
        for batch in batches_of(processed):
            sqs.delete_message_batch(
                QueueUrl=self.sqs_queue,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
            )
        change_visibility(self.hook.conn, self.sqs_queue, failed, self.retry_delay_seconds)
        return True

    def _process_message(self, message: dict) -> ProcessedPage | str:
        """Process one page in a worker thread: the result, or why it failed."""
        try:
            pointer = parse_message(message)
        except ValueError as exc:
            return str(exc)
        try:
            return process_page(self._s3, pointer, self.processed_bucket)
        except (PageProcessingError, ClientError) as exc:
            self._leave_error_note(pointer, message, str(exc))
            return str(exc)

    def _leave_error_note(self, pointer: PagePointer, message: dict, error: str) -> None:
        """Whichever consumer fails a page says why, for whichever job owns it."""
        note = {"error": error, "receives": _receives(message), "at": time.time()}
        self._s3.put_object(
            Bucket=self.raw_bucket,
            Key=processing_error_key(pointer.job_id, pointer.page_id),
            Body=json.dumps(note).encode(),
            ContentType="application/json",
        )

    def _record(self, message: dict, result: ProcessedPage | str) -> None:
        page = message.get("MessageAttributes", {}).get("taskId", {}).get("StringValue", "?")
        mine = message_job_id(message) == self._attribute_job_id
        if isinstance(result, ProcessedPage):
            if mine:
                self._settle(
                    page,
                    PageState.SUCCESSFULLY_COMPLETED,
                    processed_key=result.key,
                    records=result.records,
                    receives=_receives(message),
                )
            return
        self.log.warning("%s failed processing (receive %d): %s", page, _receives(message), result)
        if mine:
            self._recorder.mark(page, PageState.ENQUEUED, receives=_receives(message), error=result)

    def _collect_processed_elsewhere(self) -> None:
        """Pages whose output exists were processed (by another consumer or an earlier try)."""
        found = stored_page_ids(self._s3, self.processed_bucket, processed_prefix(self.job_id))
        for page in sorted(found & self._pending):
            self._settle(page, PageState.SUCCESSFULLY_COMPLETED, processed_key=None, recovered=True)

    # -- the dead-letter queue -------------------------------------------------------------

    def _account_dead_letters(self) -> None:
        """Record this job's dead-lettered pages as FailedToComplete, leaving them in the DLQ."""
        sqs = self.hook.conn
        seen: list[dict] = []
        for _ in range(10):
            response = sqs.receive_message(
                QueueUrl=self.dead_letter_queue_url, WaitTimeSeconds=0, VisibilityTimeout=30, **RECEIVE_KWARGS
            )
            batch = response.get("Messages", [])
            if not batch:
                break
            seen.extend(batch)
            for message in batch:
                page = message.get("MessageAttributes", {}).get("taskId", {}).get("StringValue")
                if message_job_id(message) == self._attribute_job_id and page in self._pending:
                    reason = (
                        f"dead-lettered after {self.max_receive_count} receives: {self._last_error(page)}"
                    )
                    self._settle(
                        page,
                        PageState.FAILED_TO_COMPLETE,
                        reason=reason,
                        dead_letter_message_id=message["MessageId"],
                    )
        # Leave every dead letter where it was, visible, for inspection and redrive.
        change_visibility(self.hook.conn, self.dead_letter_queue_url, seen, 0)

    def _last_error(self, page: str) -> str:
        try:
            note = self._s3.get_object(Bucket=self.raw_bucket, Key=processing_error_key(self.job_id, page))
            return json.loads(note["Body"].read())["error"]
        except (ClientError, ValueError, KeyError):
            return "no error note was left by the consumers"


def _receives(message: dict) -> int:
    return int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1))
