"""The process step: an SqsSensor that consumes page messages until all of its job's are settled.

It runs alongside the fetch tasks (they enqueue each page as soon as it is saved), so processing
overlaps fetching: it is downstream of them (clearing a fetch task clears it too) with trigger rule
``always``, and itself waits for the plan and the queue URLs. Its job's pages are the plan's; a
page is settled when it is processed, when it is dead-lettered, or, once every fetch task has
finished, when its fetch task recorded it as failed or never enqueued it.

The provider's SqsSensor deletes messages on reception, which would defeat the dead-letter queue.
Here a message is deleted only after its page was processed; a failing message is offered again
after a short delay and, after the queue's maxReceiveCount, SQS moves it to the DLQ, where this
sensor finds it and records the page as FailedToComplete with the error.

Like the seed's Lambda, every consumer processes whatever message it receives, whichever job it
belongs to: handing another job's message back would count as a receive and could dead-letter a
healthy page. Processing is idempotent and lands at a deterministic key, so each job learns about
pages another consumer processed from S3 (the processed object is the proof), and about failures
from the error note written next to the raw page. The sensor succeeds once every page of its job
is settled, and times out (a setting) otherwise.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.amazon.aws.sensors.sqs import SqsSensor
from airflow.sdk import timezone
from airflow.sdk.exceptions import AirflowRescheduleException, AirflowSkipException
from botocore.config import Config
from botocore.exceptions import ClientError

from api_poller import names
from api_poller.aws.messaging import (
    PagePointer,
    change_visibility,
    delete_messages,
    message_job_id,
    message_page_id,
    parse_message,
)
from api_poller.aws.objects import delete_raw_pages, stored_page_ids
from api_poller.core.keys import processed_prefix, processing_error_key, safe_job_id
from api_poller.core.lifecycle import PageState, StatusRecorder, merge_page_statuses
from api_poller.core.planning import PageTask
from api_poller.pipeline.process import PageProcessingError, ProcessedPage, process_page
from api_poller.pipeline.progress_log import ProgressLog

RECEIVE_KWARGS = {
    "MaxNumberOfMessages": 10,
    "MessageAttributeNames": ["All"],
    "AttributeNames": ["ApproximateReceiveCount"],
}
FINISHED_TI_STATES = ["success", "failed", "skipped", "upstream_failed", "removed"]
ACTIVE_TI_STATES = ["queued", "running", "deferred", "restarting"]
NOT_SUCCEEDED_TI_STATES = ["failed", "upstream_failed", "skipped", "removed"]
# Received batches being processed while the next one is received.
BATCHES_AHEAD = 1


class PageMessageSensor(SqsSensor):
    template_fields: Sequence[str] = (*SqsSensor.template_fields, "job_id")

    def __init__(
        self,
        *,
        job_id: str,
        processed_bucket: str,
        raw_bucket: str,
        max_receive_count: int = 3,
        retry_delay_seconds: int = 5,
        drain_seconds: float = 300.0,
        workers: int = 10,
        status_flush_seconds: float = 1.0,
        resources_task_id: str = names.PREPARE_RESOURCES_TASK,
        plan_task_id: str = names.PLAN_TASK,
        fetch_task_id: str = names.FETCH_TASK,
        housekeeping_seconds: float = 2.0,
        idle_reschedule_seconds: float = 2.0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("mode", "poke")
        kwargs.setdefault("trigger_rule", "always")
        # The queue URLs come from the resources step (see _start).
        kwargs.setdefault("sqs_queue", "")
        super().__init__(delete_message_on_reception=False, deferrable=False, **kwargs)
        self.job_id = job_id
        self.processed_bucket = processed_bucket
        self.raw_bucket = raw_bucket
        self.dead_letter_queue_url = ""
        self.max_receive_count = max_receive_count
        self.retry_delay_seconds = retry_delay_seconds
        self.drain_seconds = drain_seconds
        self.workers = workers
        self.status_flush_seconds = status_flush_seconds
        self.resources_task_id = resources_task_id
        self.plan_task_id = plan_task_id
        self.fetch_task_id = fetch_task_id
        self.housekeeping_seconds = housekeeping_seconds
        self.idle_reschedule_seconds = idle_reschedule_seconds
        self._recorder: StatusRecorder | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def _wait_for_plan(self, ti: Any) -> tuple[dict, list] | None:
        """The queue URLs and the plan, once both steps succeeded; None if they are not done in
        ``drain_seconds``; skip if one did not succeed; reschedule if neither is even running."""
        deadline = time.monotonic() + self.drain_seconds
        waiting_since = time.monotonic()
        steps = [self.resources_task_id, self.plan_task_id]
        while time.monotonic() < deadline:
            resources = ti.xcom_pull(task_ids=self.resources_task_id)
            plan = ti.xcom_pull(task_ids=self.plan_task_id)
            if resources and plan is not None:
                return resources, plan
            if self._count_tis(ti, steps, NOT_SUCCEEDED_TI_STATES):
                raise AirflowSkipException(
                    "nothing to process: the plan or the resources step did not succeed"
                )
            if _runs_in_process() and time.monotonic() - waiting_since >= self.idle_reschedule_seconds / 2:
                waiting_since = time.monotonic()
                # Not both done (their XComs may be a moment behind their state) and none running.
                done = self._count_tis(ti, steps, ["success"])
                if done < len(steps) and not self._count_tis(ti, steps, ACTIVE_TI_STATES):
                    self.log.info("waiting for the plan, which is not running: rescheduling")
                    self._reschedule()
            time.sleep(0.25)
        return None

    def _start(self, context: Any, resources: dict, plan: list) -> StatusRecorder:
        ti = context["ti"]
        self.sqs_queue = resources["queue_url"]
        self.dead_letter_queue_url = resources["dead_letter_queue_url"]
        self._recorder = StatusRecorder(
            lambda value: ti.xcom_push(key=names.STATUS_KEY, value=value),
            self.status_flush_seconds,
        )
        # One pooled connection per worker thread (botocore keeps 10 by default).
        pool = Config(max_pool_connections=self.workers + 4)
        self._s3 = S3Hook(aws_conn_id=self.aws_conn_id, config=pool).get_conn()
        self._attribute_job_id = safe_job_id(self.job_id)
        self._fetch_tasks = len(plan)
        self._pending = {PageTask.from_dict(page).page_id for entry in plan for page in entry["batch"]}
        self._progress = ProgressLog("process", len(self._pending))
        self._settled_here = 0
        self._idle_since: float | None = None
        self._last_housekeeping = float("-inf")
        self._fetch_finished = False
        self._fetch_outcomes_read = False
        self._in_progress: list[tuple[list[dict], list[Future]]] = []
        # After a crash and retry, or when other consumers helped: S3 holds the truth.
        self._collect_processed_elsewhere()
        # Pages processed before this try started: an earlier try may have left their messages in
        # flight (received, not deleted); they come back after the visibility timeout.
        self._sweep_at_end = self._settled_here > 0
        return self._recorder

    def _settle(self, page: str, state: PageState | None, **details: Any) -> None:
        """Take the page off the pending list; record ``state`` unless another task already did."""
        if state is not None:
            self._recorder.mark(page, state, **details)
        if page in self._pending:
            self._pending.discard(page)
            self._settled_here += 1
            self._progress.advance()

    def poke(self, context: Any) -> bool:
        ti = context["ti"]
        if self._recorder is None:
            ready = self._wait_for_plan(ti)
            if ready is None:
                return False
            self._start(context, *ready)
        recorder = self._recorder
        deadline = time.monotonic() + self.drain_seconds
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            # Keep consuming while the fetch tasks produce; look around only when the queue is idle.
            while self._pending and time.monotonic() < deadline:
                if self._consume_once(pool):
                    self._idle_since = None
                    continue
                now = time.monotonic()
                self._idle_since = self._idle_since or now
                if now - self._last_housekeeping >= self.housekeeping_seconds:
                    self._last_housekeeping = now
                    self._housekeeping(ti)
                self._give_way_if_alone(ti, now)
            self._finish_batches(keep=0)
            if not self._pending and self._sweep_at_end:
                self._sweep(pool)
        recorder.flush()
        if self._pending:
            self.log.info("%d pages of job %s still pending", len(self._pending), self.job_id)
        return not self._pending

    def _housekeeping(self, ti: Any) -> None:
        """While idle, once every fetch task has ended (before, pages are still on their way, and
        listing a large job's output every few seconds would cost more than it tells): pages
        processed elsewhere, dead letters, pages the fetch never enqueued."""
        if self._fetch_tasks_finished(ti):
            if not self._fetch_outcomes_read:  # final once the fetch tasks ended: read them once
                self._settle_never_enqueued(ti)
                self._fetch_outcomes_read = True
            if self._pending:
                self._collect_processed_elsewhere()
            if self._pending:
                self._account_dead_letters()
        self._recorder.flush(force=False)

    def _fetch_tasks_finished(self, ti: Any) -> bool:
        if not self._fetch_finished:
            self._fetch_finished = self._count_fetch_tis(ti, FINISHED_TI_STATES) >= self._fetch_tasks
        return self._fetch_finished

    def _count_fetch_tis(self, ti: Any, states: list[str]) -> int:
        return self._count_tis(ti, [self.fetch_task_id], states)

    def _reschedule(self) -> None:
        raise AirflowRescheduleException(timezone.utcnow() + timedelta(seconds=self.poke_interval))

    @staticmethod
    def _count_tis(ti: Any, task_ids: list[str], states: list[str]) -> int:
        return ti.get_ti_count(dag_id=ti.dag_id, task_ids=task_ids, run_ids=[ti.run_id], states=states)

    def _settle_never_enqueued(self, ti: Any) -> None:
        """Every fetch task has ended: a pending page it did not enqueue will never arrive."""
        fetched = merge_page_statuses(ti.xcom_pull(task_ids=[self.fetch_task_id], key=names.STATUS_KEY) or [])
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

    def _give_way_if_alone(self, ti: Any, now: float) -> None:
        """Under ``dag.test``, which runs one task at a time: nothing arrives and no fetch task is
        running, so free the process for them and come back later rather than block them. After
        pages were settled here, wait longer first: a new try starts by clearing the statuses
        this one published (they come back from S3, as pages processed earlier).

        A real scheduler runs the fetch tasks beside this sensor, which then keeps waiting: a
        sensor that reschedules itself in poke mode can be failed by the scheduler when its next
        run starts before the executor reported the previous one (seen on Airflow 3.3)."""
        if not _runs_in_process():
            return
        patience = self.idle_reschedule_seconds * (10 if self._settled_here else 1)
        if now - (self._idle_since or now) < patience:
            return
        if not self._count_fetch_tis(ti, ACTIVE_TI_STATES) and not self._fetch_tasks_finished(ti):
            self.log.info("no fetch task is running: rescheduling in %ss", self.poke_interval)
            self._reschedule()
        self._idle_since = now  # check again after another spell of patience

    # -- the main queue --------------------------------------------------------------------

    def _consume_once(self, pool: ThreadPoolExecutor) -> bool:
        """Receive a batch and hand it to the workers; settle the oldest batch once the next one is
        in hand (receiving overlaps processing). False when the queue was empty and all is settled."""
        response = self.hook.conn.receive_message(
            QueueUrl=self.sqs_queue,
            WaitTimeSeconds=0 if self._in_progress else self.wait_time_seconds,
            **RECEIVE_KWARGS,
        )
        messages = response.get("Messages", [])
        if messages:
            self._in_progress.append((messages, [pool.submit(self._process_message, m) for m in messages]))
        self._finish_batches(keep=BATCHES_AHEAD if messages else 0)
        return bool(messages)

    def _sweep(self, pool: ThreadPoolExecutor) -> None:
        """Drain the messages an earlier try received but never deleted, rather than leave them to
        the next job: wait for the queue to be empty, at most its visibility timeout (+5 s). Their
        pages are processed, so they are only deleted (processing is idempotent)."""
        sqs = self.hook.conn
        timeout = sqs.get_queue_attributes(QueueUrl=self.sqs_queue, AttributeNames=["VisibilityTimeout"])
        deadline = time.monotonic() + int(timeout["Attributes"]["VisibilityTimeout"]) + 5
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        while time.monotonic() < deadline:
            if self._consume_once(pool):
                continue
            counts = sqs.get_queue_attributes(QueueUrl=self.sqs_queue, AttributeNames=names)["Attributes"]
            if not any(int(counts.get(name, 0)) for name in names):
                break
        self._finish_batches(keep=0)
        self._sweep_at_end = False

    def _finish_batches(self, keep: int) -> None:
        """Settle the oldest received batches until at most ``keep`` are left in progress."""
        while len(self._in_progress) > keep:
            self._finish_batch(*self._in_progress.pop(0))

    def _finish_batch(self, messages: list[dict], futures: list[Future]) -> None:
        """Record the batch, then delete what was processed: raw pages and messages, in batches.

        A message is deleted only after its page was processed: one that failed stays and is
        offered again by SQS (after ``retry_delay_seconds``), then dead-lettered."""
        outcomes = [future.result() for future in futures]
        for message, result in zip(messages, outcomes, strict=True):
            self._record(message, result)
        done = [(m, r) for m, r in zip(messages, outcomes, strict=True) if isinstance(r, ProcessedPage)]
        failed = [m for m, r in zip(messages, outcomes, strict=True) if isinstance(r, str)]
        delete_raw_pages(self._s3, [r.raw for _, r in done if r.raw is not None])
        delete_messages(self.hook.conn, self.sqs_queue, [m for m, _ in done])
        change_visibility(self.hook.conn, self.sqs_queue, failed, self.retry_delay_seconds)

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
        page = message_page_id(message) or "?"
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
                page = message_page_id(message)
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


def _runs_in_process() -> bool:
    """True under ``dag.test()``: tasks run one after another in the caller's process."""
    try:
        from airflow.sdk.execution_time import task_runner
        from airflow.sdk.execution_time.supervisor import InProcessSupervisorComms
    except ImportError:
        return False
    return isinstance(getattr(task_runner, "SUPERVISOR_COMMS", None), InProcessSupervisorComms)


def _receives(message: dict) -> int:
    return int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1))
