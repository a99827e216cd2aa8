"""The page-status recorder of a running task instance: XCom for the run, an S3 checkpoint for
its next try (see ``api_poller.aws.status_checkpoint``)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from api_poller import names
from api_poller.aws.status_checkpoint import StatusCheckpoint
from api_poller.core.lifecycle import StatusRecorder

if TYPE_CHECKING:
    from airflow.sdk.types import RuntimeTaskInstanceProtocol

    from api_poller.aws.clients import S3Client

log = logging.getLogger(__name__)


def checkpointed_recorder(
    ti: RuntimeTaskInstanceProtocol, s3_client: S3Client, raw_bucket: str, interval: float
) -> StatusRecorder:
    """A recorder publishing to the task instance's ``page_status`` XCom and its checkpoint.

    A try that finds a checkpoint (an earlier try of this task instance published) starts from
    it and republishes it at once, so the job's progress does not fall back while it redoes work.
    """
    map_index = ti.map_index if ti.map_index is not None else -1
    checkpoint = StatusCheckpoint(s3_client, raw_bucket, ti.run_id, ti.task_id, map_index)
    floor = checkpoint.read()
    recorder = StatusRecorder(
        lambda value: ti.xcom_push(key=names.STATUS_KEY, value=value),
        interval,
        floor=floor,
        checkpoint=checkpoint.write,
    )
    if floor:
        log.info("republishing %d page statuses of an earlier try of this task", len(floor))
        recorder.flush()
    return recorder
