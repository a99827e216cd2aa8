"""What every poller DAG's tasks share: the AWS clients, the page-status recorder, the consumer step.

The seed DAG (``dags/api_poller_dag.py``) and every source DAG (``adapters.source_dag``) build
their tasks from these, so the two shapes cannot drift apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import get_current_context

from api_poller import names
from api_poller.adapters.sensor import PageMessageSensor
from api_poller.settings import PollerSettings

if TYPE_CHECKING:
    from api_poller.aws.clients import S3Client, SqsClient
    from api_poller.core.lifecycle import StatusRecorder


def aws_clients(settings: PollerSettings) -> tuple[S3Client, SqsClient]:
    """S3 and SQS clients of the deployment's AWS connection (inside a task)."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.providers.amazon.aws.hooks.sqs import SqsHook

    return S3Hook(aws_conn_id=settings.aws_conn_id).get_conn(), SqsHook(aws_conn_id=settings.aws_conn_id).conn


def status_recorder(settings: PollerSettings) -> StatusRecorder:
    """The running task's page-status recorder, publishing to its ``page_status`` XCom."""
    from api_poller.core.lifecycle import StatusRecorder

    ti = get_current_context()["ti"]
    return StatusRecorder(
        lambda value: ti.xcom_push(key=names.STATUS_KEY, value=value), settings.status_flush_seconds
    )


def consume_page_messages(settings: PollerSettings) -> PageMessageSensor:
    """The process step: the SQS consumer of the run's page messages, configured from settings.

    Downstream of the fetch tasks (clearing one reruns it) but with trigger rule "always": it starts
    at once, waits for the plan and queue URLs, and processes pages as they are enqueued.
    """
    return PageMessageSensor(
        task_id=names.CONSUME_TASK,
        aws_conn_id=settings.aws_conn_id,
        job_id="{{ run_id }}",
        processed_bucket=settings.processed_bucket,
        raw_bucket=settings.raw_bucket,
        max_receive_count=settings.max_receive_count,
        retry_delay_seconds=settings.process_retry_delay_seconds,
        poke_interval=settings.process_poke_seconds,
        timeout=settings.process_timeout_seconds,
        status_flush_seconds=settings.status_flush_seconds,
        workers=settings.process_workers,
        yield_when_idle_seconds=settings.process_yield_seconds or None,
    )
