"""Page statuses through a run's XComs (format: ``core.status_document``): the recorder of a
running task instance (XCom for the run, an S3 checkpoint for its next try, see
``api_poller.aws.status_checkpoint``) and the readings of the run's later steps."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from api_poller import names
from api_poller.aws.status_checkpoint import StatusCheckpoint
from api_poller.core.lifecycle import Publication, StatusRecorder
from api_poller.core.status_document import JobStatus, chunk_key, read_summary

if TYPE_CHECKING:
    from airflow.sdk.types import RuntimeTaskInstanceProtocol

    from api_poller.aws.clients import S3Client

log = logging.getLogger(__name__)


def xcom_publisher(ti: RuntimeTaskInstanceProtocol) -> Callable[[Publication], None]:
    """Publish to the task instance's XComs: each changed chunk (``page_status.<chunk>``), then the
    summary (``page_status``), so a reader that finds a chunk in the summary finds its XCom."""

    def publish(publication: Publication) -> None:
        for chunk, records in publication.chunks.items():
            ti.xcom_push(key=chunk_key(names.STATUS_KEY, chunk), value=records)
        ti.xcom_push(key=names.STATUS_KEY, value=publication.summary)

    return publish


def checkpointed_recorder(
    ti: RuntimeTaskInstanceProtocol, s3_client: S3Client, raw_bucket: str, interval: float
) -> StatusRecorder:
    """A recorder publishing to the task instance's status XComs and its checkpoint.

    A try that finds a checkpoint (an earlier try of this task instance published) starts from
    it and republishes it at once, so the job's progress does not fall back while it redoes work.
    """
    map_index = ti.map_index if ti.map_index is not None else -1
    checkpoint = StatusCheckpoint(s3_client, raw_bucket, ti.run_id, ti.task_id, map_index)
    floor = checkpoint.read_records()
    recorder = StatusRecorder(xcom_publisher(ti), interval, floor=floor, checkpoint=checkpoint.write)
    if floor:
        log.info("republishing %d page statuses of an earlier try of this task", len(floor))
        recorder.flush()
    return recorder


def published_page_records(
    ti: RuntimeTaskInstanceProtocol, task_ids: Sequence[str] = names.STATUS_TASK_IDS
) -> list[dict[str, dict[str, Any]]]:
    """Every page record the run's ``task_ids`` published (all map indexes), as record maps to merge
    (``core.lifecycle.merge_page_statuses``): for steps that run once per job (report, end of job).

    One XCom read for the summaries, then one per detail chunk any of them lists.
    """
    documents: list[dict[str, dict[str, Any]]] = []
    chunks: set[int] = set()
    for value in ti.xcom_pull(task_ids=list(task_ids), key=names.STATUS_KEY) or []:
        if value is None:
            continue
        try:
            summary = read_summary(value)
        except ValueError as error:
            log.warning("ignoring a malformed page_status XCom: %s", error)
            continue
        if summary.records is not None:  # the earlier format: the records themselves
            documents.append(summary.records)
        else:
            chunks.update(summary.chunks)
    for chunk in sorted(chunks):
        pulled = ti.xcom_pull(task_ids=list(task_ids), key=chunk_key(names.STATUS_KEY, chunk)) or []
        documents.extend(document for document in pulled if isinstance(document, dict))
    return documents


def published_status(
    ti: RuntimeTaskInstanceProtocol, task_ids: Sequence[str] = names.STATUS_TASK_IDS
) -> JobStatus:
    """The merged status of the run's ``task_ids`` from their summaries alone (one XCom read)."""
    summaries = []
    for value in ti.xcom_pull(task_ids=list(task_ids), key=names.STATUS_KEY) or []:
        try:
            summaries.append(read_summary(value))
        except ValueError:
            continue  # None (not published) or malformed
    return JobStatus.merge(summaries)
