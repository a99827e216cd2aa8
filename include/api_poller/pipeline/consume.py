"""Consume a job's page messages until every page of the job is settled: the process step's loop.

The consumer runs alongside the fetch tasks (they enqueue each page as soon as it is saved), so
processing overlaps fetching. A page of the job is settled when it is processed, when it is
dead-lettered, or, once every fetch task has ended, when its fetch task recorded it as failed or
never enqueued it.

Why it works the way it does (each point was a bug once, or a cost that was measured):

* A message is deleted only after its page was processed. Deleting on reception (the provider
  SqsSensor's default) would defeat the dead-letter queue: a failing message is offered again
  after ``retry_delay_seconds`` and, after the queue's maxReceiveCount, SQS moves it to the DLQ,
  where the consumer finds it and records the page as FailedToComplete with the last error.
* Like the seed's Lambda, a consumer processes whatever message it receives, whichever job it
  belongs to: handing another job's message back would count as a receive and could dead-letter
  a healthy page. Processing is idempotent and lands at a deterministic key, so each job learns
  about pages another consumer processed from S3 (the processed object is the proof), and about
  failures from the error note the failing consumer writes next to the raw page.
* SQS delivers at least once: a message whose page is already processed is only deleted.
* The consumer looks around (its output in S3, the DLQ, the fetch step's outcomes) only while the
  queue is idle and once every fetch task has ended: before, pages are still on their way, and
  listing a large job's output every few seconds costs more than it tells. The fetch step's
  outcomes are final once it ended, so they are read once.
* After a crash and a new try, S3 holds the truth: pages already processed are settled at start,
  and the messages the earlier try received but never deleted (in flight, back after the queue's
  visibility timeout) are drained at the end rather than left to the next job.
* Receiving overlaps processing: the next batch is received while the workers process the current
  one. Raw pages and messages are deleted in batches (one call per received batch).
* A walked job (a source whose total is unknown: cursor, next link) has no planned pages: with
  ``discover_pages`` the job's pages are the ones its messages announce, as they arrive; once every
  fetch task has ended, the pages the fetch recorded are the final list, settled as planned pages
  are (so a page the walk saved but never enqueued is not forgotten).

No Airflow here: the process step's sensor (``adapters.sensor``) adapts this class to Airflow.
"""

from __future__ import annotations

import enum
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from botocore.exceptions import ClientError

from api_poller.aws.clients import S3Client, SqsClient
from api_poller.aws.messaging import (
    PagePointer,
    change_visibility,
    delete_messages,
    message_job_id,
    message_page_id,
    parse_message,
)
from api_poller.aws.objects import delete_raw_pages, stored_page_ids
from api_poller.core.byte_budget import ByteBudget
from api_poller.core.keys import processed_prefix, processing_error_key, safe_job_id
from api_poller.core.lifecycle import PageState, StatusRecorder
from api_poller.core.planning import batch_page_numbers, page_id
from api_poller.observability.metrics import JobMetrics
from api_poller.pipeline.process import PageProcessingError, ProcessedPage, process_page
from api_poller.pipeline.progress_log import ProgressLog
from api_poller.settings import PollerSettings

log = logging.getLogger(__name__)

Message = Mapping[str, Any]

RECEIVE_KWARGS: dict[str, Any] = {
    "MaxNumberOfMessages": 10,
    "MessageAttributeNames": ["All"],
    "AttributeNames": ["ApproximateReceiveCount"],
}
# Received batches being processed while the next one is received.
BATCHES_AHEAD = 1
# Dead letters are read at most this many batches of 10 per look.
DEAD_LETTER_BATCHES = 10
# After pages were settled, wait this many times longer before giving way: a new try starts by
# clearing the statuses this one published (they come back from S3, as pages processed earlier).
PATIENCE_AFTER_PROGRESS = 10


class FetchView(Protocol):
    """What the consumer needs to know about its job's fetch step."""

    def fetch_finished(self) -> bool:
        """Every fetch task has ended (whatever its outcome); final once true."""
        ...

    def fetch_running(self) -> bool:
        """Some fetch task is queued or running, so pages may still arrive."""
        ...

    def fetch_records(self) -> Mapping[str, Mapping[str, Any]]:
        """Each page's latest status record across the fetch tasks (read once they all ended)."""
        ...


class RunOutcome(enum.Enum):
    SETTLED = "settled"  # every page of the job is settled
    PENDING = "pending"  # the time given ran out with pages still pending
    GAVE_WAY = "gave_way"  # idle with no fetch task running: come back later (see run)


class PageConsumer:
    """Receives, processes and deletes page messages until every page of ``job_id`` is settled.

    ``pages`` are the job's planned page ids (with ``discover_pages``, the job's pages are also
    those its messages announce, and the fetch's recorded pages once it ended); ``recorder``
    collects this consumer's page records (its owner publishes them: call ``recorder.flush()``
    after ``run``). ``fetch`` tells whether
    the fetch step has ended and what it recorded. ``wait_time_seconds`` is the long poll of an
    idle receive; ``housekeeping_seconds`` how often an idle consumer looks around.
    ``page_bytes_in_flight``: the bytes of pages the workers hold at once, together (a page
    larger than that is processed alone).
    """

    def __init__(
        self,
        *,
        s3: S3Client,
        sqs: SqsClient,
        queue_url: str,
        dead_letter_queue_url: str,
        raw_bucket: str,
        processed_bucket: str,
        job_id: str,
        pages: Iterable[str],
        recorder: StatusRecorder,
        fetch: FetchView,
        max_receive_count: int = 3,
        retry_delay_seconds: int = 5,
        wait_time_seconds: int = 1,
        workers: int = 10,
        housekeeping_seconds: float = 2.0,
        discover_pages: bool = False,
        metrics: JobMetrics | None = None,
        page_bytes_in_flight: int = PollerSettings.page_bytes_in_flight,
    ) -> None:
        self._s3 = s3
        self._sqs = sqs
        self._queue_url = queue_url
        self._dead_letter_queue_url = dead_letter_queue_url
        self._raw_bucket = raw_bucket
        self._processed_bucket = processed_bucket
        self._job_id = job_id
        # Messages carry the sanitized job id as their jobId attribute.
        self._attribute_job_id = safe_job_id(job_id)
        self._pending = set(pages)
        self._settled: set[str] = set()
        # True while the job's page list may still grow (a walk whose fetch has not ended).
        self._discovering = discover_pages
        self._recorder = recorder
        self._metrics = metrics or JobMetrics("unknown")
        self._fetch = fetch
        self._max_receive_count = max_receive_count
        self._retry_delay_seconds = retry_delay_seconds
        self._wait_time_seconds = wait_time_seconds
        self._workers = workers
        self.budget = ByteBudget(page_bytes_in_flight)
        self._housekeeping_seconds = housekeeping_seconds
        self._progress = ProgressLog("process", len(self._pending))
        self._started = False
        self._settled_here = 0
        self._idle_since: float | None = None
        self._last_housekeeping = float("-inf")
        self._fetch_finished = False
        self._fetch_outcomes_read = False
        self._sweep_at_end = False
        self._in_progress: list[tuple[list[Message], list[Future[ProcessedPage | str]]]] = []

    @property
    def pending(self) -> frozenset[str]:
        """The job's pages not settled yet."""
        return frozenset(self._pending)

    def run(self, seconds: float, yield_when_idle_seconds: float | None = None) -> RunOutcome:
        """Consume for at most ``seconds``, or until every page is settled.

        With ``yield_when_idle_seconds``, give way (``GAVE_WAY``) once nothing was received for
        that long while no fetch task is running and they have not all ended (ten times as long
        once this consumer settled pages): for a runner that runs one task at a time, where
        waiting here would block the fetch tasks that produce the pages.
        """
        if not self._started:
            self._start()
        deadline = time.monotonic() + seconds
        with ThreadPoolExecutor(max_workers=self._workers) as pool:
            # Keep consuming while the fetch tasks produce; look around only when the queue is idle.
            while self._unsettled() and time.monotonic() < deadline:
                if self._consume_once(pool):
                    self._idle_since = None
                    continue
                now = time.monotonic()
                if self._idle_since is None:
                    self._idle_since = now
                if now - self._last_housekeeping >= self._housekeeping_seconds:
                    self._last_housekeeping = now
                    self._housekeeping()
                if yield_when_idle_seconds and self._should_give_way(now, yield_when_idle_seconds):
                    return RunOutcome.GAVE_WAY
            self._finish_batches(keep=0)
            if not self._unsettled() and self._sweep_at_end:
                self._sweep(pool)
        if self._unsettled():
            log.info("%d pages of job %s still pending", len(self._pending), self._job_id)
            return RunOutcome.PENDING
        return RunOutcome.SETTLED

    # -- settling pages --------------------------------------------------------------------

    def _start(self) -> None:
        self._started = True
        # After a crash and retry, or when other consumers helped: S3 holds the truth.
        self._collect_processed_elsewhere()
        # Pages processed before this try started: an earlier try may have left their messages in
        # flight (received, not deleted); they come back after the visibility timeout.
        self._sweep_at_end = self._settled_here > 0

    def _unsettled(self) -> bool:
        """Pages are pending, or may still be discovered."""
        return bool(self._pending) or self._discovering

    def _discover(self, page: str) -> None:
        """A page of the job announced while its page list is still growing (a walk)."""
        if self._discovering and page not in self._settled:
            self._pending.add(page)

    def _settle(self, page: str, state: PageState | None, **details: Any) -> None:
        """Take the page off the pending list; record ``state`` unless another task already did."""
        if state is not None:
            self._recorder.mark(page, state, **details)
            if state is PageState.FAILED_TO_COMPLETE:
                self._metrics.page_failed()
        self._settled.add(page)
        if page in self._pending:
            self._pending.discard(page)
            self._settled_here += 1
            self._progress.advance()

    def _housekeeping(self) -> None:
        """Once every fetch task has ended: pages the fetch never enqueued, pages processed
        elsewhere, dead letters."""
        if self._fetch_tasks_finished():
            if not self._fetch_outcomes_read:  # final once the fetch tasks ended: read them once
                fetched = self._fetch.fetch_records()
                if self._discovering:  # the walk is over: its recorded pages are the final list
                    self._pending.update(set(fetched) - self._settled)
                    self._discovering = False
                self._settle_never_enqueued(fetched)
                self._fetch_outcomes_read = True
            if self._pending:
                self._collect_processed_elsewhere()
            if self._pending:
                self._account_dead_letters()
        self._recorder.flush(force=False)

    def _fetch_tasks_finished(self) -> bool:
        if not self._fetch_finished:
            self._fetch_finished = self._fetch.fetch_finished()
        return self._fetch_finished

    def _should_give_way(self, now: float, patience: float) -> bool:
        """Nothing arrived for a while and no fetch task is running (nor have all ended)."""
        if self._settled_here:
            patience *= PATIENCE_AFTER_PROGRESS
        if now - (self._idle_since or now) < patience:
            return False
        if not self._fetch.fetch_running() and not self._fetch_tasks_finished():
            log.info("idle and no fetch task is running: giving way")
            return True
        self._idle_since = now  # check again after another spell of patience
        return False

    def _settle_never_enqueued(self, fetched: Mapping[str, Mapping[str, Any]]) -> None:
        """Every fetch task has ended: a pending page it did not enqueue will never arrive."""
        for page in sorted(self._pending):
            record = fetched.get(page)
            state = PageState(record["state"]) if record else None
            if state in (PageState.ENQUEUED, PageState.SUCCESSFULLY_COMPLETED):
                continue  # its message or its output is on the way
            if state is PageState.FAILED_TO_COMPLETE:
                self._settle(page, None)  # the fetch task recorded why
            else:
                reason = "never enqueued: its fetch task ended without saving it (see the fetch_pages log)"
                self._settle(page, PageState.FAILED_TO_COMPLETE, reason=reason)

    def _collect_processed_elsewhere(self) -> None:
        """Pages whose output exists were processed (by another consumer or an earlier try)."""
        found = stored_page_ids(self._s3, self._processed_bucket, processed_prefix(self._job_id))
        # While a walk goes on, every processed page of the job is one of its pages.
        mine = found - self._settled if self._discovering else found & self._pending
        for page in sorted(mine):
            self._discover(page)
            self._settle(page, PageState.SUCCESSFULLY_COMPLETED, processed_key=None, recovered=True)

    # -- the main queue --------------------------------------------------------------------

    def _consume_once(self, pool: ThreadPoolExecutor) -> bool:
        """Receive a batch and hand it to the workers; settle the oldest batch once the next one is
        in hand (receiving overlaps processing). False when the queue was empty and all is settled."""
        response = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            WaitTimeSeconds=0 if self._in_progress else self._wait_time_seconds,
            **RECEIVE_KWARGS,
        )
        messages: list[Message] = list(response.get("Messages", []))
        if messages:
            self._in_progress.append((messages, [pool.submit(self._process_message, m) for m in messages]))
        self._finish_batches(keep=BATCHES_AHEAD if messages else 0)
        return bool(messages)

    def _sweep(self, pool: ThreadPoolExecutor) -> None:
        """Drain the messages an earlier try received but never deleted, rather than leave them to
        the next job: wait for the queue to be empty, at most its visibility timeout (+5 s). Their
        pages are processed, so they are only deleted (processing is idempotent)."""
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=self._queue_url, AttributeNames=["VisibilityTimeout"]
        )["Attributes"]
        deadline = time.monotonic() + int(attributes["VisibilityTimeout"]) + 5
        while time.monotonic() < deadline:
            if self._consume_once(pool):
                continue
            counts = self._sqs.get_queue_attributes(
                QueueUrl=self._queue_url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
            visible = int(counts.get("ApproximateNumberOfMessages", "0"))
            in_flight = int(counts.get("ApproximateNumberOfMessagesNotVisible", "0"))
            if not visible and not in_flight:
                break
        self._finish_batches(keep=0)
        self._sweep_at_end = False

    def _finish_batches(self, keep: int) -> None:
        """Settle the oldest received batches until at most ``keep`` are left in progress."""
        while len(self._in_progress) > keep:
            self._finish_batch(*self._in_progress.pop(0))

    def _finish_batch(self, messages: list[Message], futures: list[Future[ProcessedPage | str]]) -> None:
        """Record the batch, then delete what was processed: raw pages and messages, in batches.

        A message is deleted only after its page was processed: one that failed stays and is
        offered again by SQS (after ``retry_delay_seconds``), then dead-lettered."""
        outcomes = [future.result() for future in futures]
        for message, result in zip(messages, outcomes, strict=True):
            self._record(message, result)
        done = [(m, r) for m, r in zip(messages, outcomes, strict=True) if isinstance(r, ProcessedPage)]
        failed = [m for m, r in zip(messages, outcomes, strict=True) if isinstance(r, str)]
        delete_raw_pages(self._s3, [r.raw for _, r in done if r.raw is not None])
        delete_messages(self._sqs, self._queue_url, [m for m, _ in done])
        change_visibility(self._sqs, self._queue_url, failed, self._retry_delay_seconds)

    def _process_message(self, message: Message) -> ProcessedPage | str:
        """Process one page in a worker thread: the result, or why it failed."""
        try:
            pointer = parse_message(message)
        except ValueError as exc:
            return str(exc)
        try:
            return process_page(self._s3, pointer, self._processed_bucket, self.budget)
        except (PageProcessingError, ClientError) as exc:
            self._leave_error_note(pointer, message, str(exc))
            return str(exc)

    def _leave_error_note(self, pointer: PagePointer, message: Message, error: str) -> None:
        """Whichever consumer fails a page says why, for whichever job owns it."""
        note = {"error": error, "receives": receive_count(message), "at": time.time()}
        self._s3.put_object(
            Bucket=self._raw_bucket,
            Key=processing_error_key(pointer.job_id, pointer.page_id),
            Body=json.dumps(note).encode(),
            ContentType="application/json",
        )

    def _record(self, message: Message, result: ProcessedPage | str) -> None:
        page = message_page_id(message) or "?"
        mine = message_job_id(message) == self._attribute_job_id
        if mine:
            self._discover(page)
        if isinstance(result, ProcessedPage):
            if result.raw is not None:  # written now (a repeat delivery writes nothing)
                self._metrics.page_processed(result.records, result.bytes)
            if mine:
                self._settle(
                    page,
                    PageState.SUCCESSFULLY_COMPLETED,
                    processed_key=result.key,
                    records=result.records,
                    receives=receive_count(message),
                    max_cursor=result.max_cursor,  # a source's incremental cursor, for the watermark
                )
            return
        log.warning("%s failed processing (receive %d): %s", page, receive_count(message), result)
        if mine:
            self._recorder.mark(page, PageState.ENQUEUED, receives=receive_count(message), error=result)

    # -- the dead-letter queue -------------------------------------------------------------

    def _account_dead_letters(self) -> None:
        """Record this job's dead-lettered pages as FailedToComplete, leaving them in the DLQ."""
        seen: list[Message] = []
        for _ in range(DEAD_LETTER_BATCHES):
            response = self._sqs.receive_message(
                QueueUrl=self._dead_letter_queue_url,
                WaitTimeSeconds=0,
                VisibilityTimeout=30,
                **RECEIVE_KWARGS,
            )
            batch: list[Message] = list(response.get("Messages", []))
            if not batch:
                break
            seen.extend(batch)
            for message in batch:
                page = message_page_id(message) or ""
                if message_job_id(message) != self._attribute_job_id or page not in self._pending:
                    continue  # another job's, or settled already: left alone
                reason = f"dead-lettered after {self._max_receive_count} receives: {self._last_error(page)}"
                self._settle(
                    page,
                    PageState.FAILED_TO_COMPLETE,
                    reason=reason,
                    dead_letter_message_id=message["MessageId"],
                )
        # Leave every dead letter where it was, visible, for inspection and redrive.
        change_visibility(self._sqs, self._dead_letter_queue_url, seen, 0)

    def _last_error(self, page: str) -> str:
        try:
            note = self._s3.get_object(Bucket=self._raw_bucket, Key=processing_error_key(self._job_id, page))
            return str(json.loads(note["Body"].read())["error"])
        except (ClientError, ValueError, KeyError):
            return "no error note was left by the consumers"


def plan_page_ids(plan: Sequence[Mapping[str, Any]]) -> tuple[list[str], bool]:
    """The page ids a plan (the plan task's return value) announces, and whether the job's pages
    are discovered as it goes (a source walked page after page, whose total is unknown).

    Each entry's ``batch`` is a page range (``core.planning.batch_page_numbers`` also reads an older
    plan's page lists); a source's entries (``pipeline.source_fetch``'s fetch task arguments) carry
    their ``mode``.
    """
    pages: list[str] = []
    discover = False
    for entry in plan:
        if entry.get("mode") == "walk":
            discover = True
        else:
            pages.extend(page_id(number) for number in batch_page_numbers(entry["batch"]))
    return pages, discover


def receive_count(message: Mapping[str, Any]) -> int:
    """How many times SQS has delivered the message (1 on its first receive)."""
    return int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1))
