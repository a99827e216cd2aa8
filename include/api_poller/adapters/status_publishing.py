"""Page statuses through a run's XComs (format: ``core.status_document``): the recorder of a
running task instance (XCom for the run, an S3 checkpoint for its next try, see
``api_poller.aws.status_checkpoint``) and the readings of the run's later steps."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from api_poller import names
from api_poller.aws.status_checkpoint import StatusCheckpoint
from api_poller.core.lifecycle import Publication, StatusRecorder
from api_poller.core.status_document import (
    JobStatus,
    TaskStatus,
    chunk_key,
    encode_chunk,
    read_chunk,
    read_summary,
)

if TYPE_CHECKING:
    from airflow.sdk.types import RuntimeTaskInstanceProtocol

    from api_poller.aws.clients import S3Client

log = logging.getLogger(__name__)


def xcom_publisher(ti: RuntimeTaskInstanceProtocol) -> Callable[[Publication], None]:
    """Publish to the task instance's XComs: each changed chunk (``page_status.<chunk>``, as JSON
    text: ``encode_chunk``), then the summary (``page_status``), so a reader that finds a chunk in
    the summary finds its XCom."""

    def publish(publication: Publication) -> None:
        for chunk, records in publication.chunks.items():
            ti.xcom_push(key=chunk_key(names.STATUS_KEY, chunk), value=encode_chunk(records))
        ti.xcom_push(key=names.STATUS_KEY, value=publication.summary)

    return publish


class BackgroundPublisher:
    """Publishes a recorder's publications on a thread of its own, in order, so a page's work
    never waits for an XCom or an S3 request (a fetch task's pages share one event loop).

    Publications that queue up while one is being published go out as one
    (``Publication.merged``). ``drain()`` returns once everything handed over is published; an
    error of the thread is raised by the next call, so a task cannot end without its statuses.
    """

    def __init__(self, publish: Callable[[Publication], None]) -> None:
        self._publish = publish
        self._pending: list[Publication] = []
        self._busy = False
        self._error: BaseException | None = None
        self._changed = threading.Condition()
        threading.Thread(target=self._run, name="page-status-publisher", daemon=True).start()

    def __call__(self, publication: Publication) -> None:
        with self._changed:
            self._raise_error()
            self._pending.append(publication)
            self._changed.notify_all()

    def drain(self) -> None:
        with self._changed:
            while self._pending or self._busy:
                self._changed.wait()
            self._raise_error()

    def _raise_error(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._pending:
                    self._changed.wait()
                batch, self._pending = self._pending, []
                self._busy = True
            try:
                self._publish(Publication.merged(batch))
            except BaseException as error:  # handed to the task's thread, which raises it
                with self._changed:
                    self._error = error
            finally:
                with self._changed:
                    self._busy = False
                    self._changed.notify_all()


def supervisor_comms_are_thread_safe() -> bool:
    """Whether this task may talk to Airflow from a second thread: a task process's channel to its
    supervisor (``CommsDecoder``) is a socket guarded by a lock; ``dag.test`` (``airflow dags
    test``) runs tasks inside its own process with in-process comms that swap a module global on
    every request, which a second thread would see half-done."""
    from airflow.sdk.execution_time import task_runner
    from airflow.sdk.execution_time.comms import CommsDecoder

    return isinstance(getattr(task_runner, "SUPERVISOR_COMMS", None), CommsDecoder)


def checkpointed_recorder(
    ti: RuntimeTaskInstanceProtocol, s3_client: S3Client, raw_bucket: str, interval: float
) -> StatusRecorder:
    """A recorder publishing to the task instance's status XComs and its checkpoint, on a thread
    of its own (``BackgroundPublisher``; its forced flushes wait for it) where Airflow's comms
    allow it, else inline.

    A try that finds a checkpoint (an earlier try of this task instance published) starts from
    it and republishes it at once, so the job's progress does not fall back while it redoes work.
    """
    map_index = ti.map_index if ti.map_index is not None else -1
    checkpoint = StatusCheckpoint(s3_client, raw_bucket, ti.run_id, ti.task_id, map_index)
    floor = checkpoint.read_records()
    to_xcom = xcom_publisher(ti)

    def publish(publication: Publication) -> None:
        to_xcom(publication)
        checkpoint.write(publication)  # after the XCom: a floor never ahead of what was published

    if supervisor_comms_are_thread_safe():
        publisher = BackgroundPublisher(publish)
        recorder = StatusRecorder(publisher, interval, floor=floor, drain=publisher.drain)
    else:
        recorder = StatusRecorder(publish, interval, floor=floor)
    if floor:
        log.info("republishing %d page statuses of an earlier try of this task", len(floor))
        recorder.flush()
    return recorder


def published_summaries(ti: RuntimeTaskInstanceProtocol, task_ids: Sequence[str]) -> list[TaskStatus]:
    """The summaries the run's ``task_ids`` published (all map indexes; one XCom read)."""
    summaries = []
    for value in ti.xcom_pull(task_ids=list(task_ids), key=names.STATUS_KEY) or []:
        if value is None:
            continue  # not published (yet)
        try:
            summaries.append(read_summary(value))
        except ValueError as error:
            log.warning("ignoring a malformed page_status XCom: %s", error)
    return summaries


def iter_published_page_records(
    ti: RuntimeTaskInstanceProtocol, task_ids: Sequence[str] = names.STATUS_TASK_IDS
) -> Iterator[dict[str, dict[str, Any]]]:
    """Every page record the run's ``task_ids`` published (all map indexes), as record maps to merge
    (``core.lifecycle.merge_page_statuses``), a chunk at a time: for steps that run once per job
    (report, end of job), which so never hold more than one chunk besides what they merge.

    One XCom read for the summaries, then one per detail chunk any of them lists.
    """
    chunks: set[int] = set()
    for summary in published_summaries(ti, task_ids):
        if summary.records is not None:  # the earlier format: the records themselves
            yield summary.records
        else:
            chunks.update(summary.chunks)
    for chunk in sorted(chunks):
        pulled = ti.xcom_pull(task_ids=list(task_ids), key=chunk_key(names.STATUS_KEY, chunk)) or []
        yield from (records for records in map(read_chunk, pulled) if records is not None)


def published_status(
    ti: RuntimeTaskInstanceProtocol, task_ids: Sequence[str] = names.STATUS_TASK_IDS
) -> JobStatus:
    """The merged status of the run's ``task_ids`` from their summaries alone (one XCom read)."""
    return JobStatus.merge(published_summaries(ti, task_ids))
