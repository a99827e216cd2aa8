"""What every poller DAG's tasks share: the AWS clients, the page-status recorder, the consumer step.

The seed DAG (``dags/api_poller_dag.py``) and every source DAG (``adapters.source_dag``) build
their tasks from these, so the two shapes cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn

from airflow.sdk import get_current_context, task

from api_poller import names
from api_poller.adapters.sensor import PageMessageSensor
from api_poller.settings import PollerSettings

if TYPE_CHECKING:
    from airflow.sdk.definitions.xcom_arg import XComArg

    from api_poller.aws.clients import S3Client, SqsClient
    from api_poller.core.lifecycle import StatusRecorder


def s3_client(settings: PollerSettings) -> S3Client:
    """An S3 client of the deployment's AWS connection (inside a task)."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=settings.aws_conn_id).get_conn()


def aws_clients(settings: PollerSettings) -> tuple[S3Client, SqsClient]:
    """S3 and SQS clients of the deployment's AWS connection (inside a task). A step that needs S3
    only takes ``s3_client``: each hook builds its own session and client, which costs a task CPU."""
    from airflow.providers.amazon.aws.hooks.sqs import SqsHook

    return s3_client(settings), SqsHook(aws_conn_id=settings.aws_conn_id).conn


def status_recorder(settings: PollerSettings, s3: S3Client) -> StatusRecorder:
    """The running task's page-status recorder, publishing to its ``page_status`` XCom (and its
    checkpoint in the raw bucket, through the task's ``s3`` client, which a later try of the task
    starts from)."""
    from api_poller.adapters.status_publishing import checkpointed_recorder

    ti = get_current_context()["ti"]
    return checkpointed_recorder(ti, s3, settings.raw_bucket, settings.status_flush_seconds)


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
        page_bytes_in_flight=settings.page_bytes_in_flight,
    )


def prepare_resources(settings: PollerSettings) -> XComArg:
    """The resources step: make sure the buckets and queues exist (creating them when allowed);
    its value is the queue URLs."""

    @task(task_id=names.PREPARE_RESOURCES_TASK)
    def prepare_resources() -> dict[str, str]:
        """Make sure the buckets and queues exist (creating them when allowed); the queue URLs."""
        from api_poller.aws.resources import ensure_resources

        s3, sqs = aws_clients(settings)
        return ensure_resources(s3, sqs, settings, create=settings.create_resources)

    return prepare_resources()


def fail_plan(message: str) -> NoReturn:
    """End the plan step for good (bad input, a bad Connection or an API that keeps failing:
    retrying would not help), keeping the message, credential-free as every PollerError's, for
    the job API to show."""
    from airflow.sdk.exceptions import AirflowFailException

    get_current_context()["ti"].xcom_push(key=names.PLAN_ERROR_KEY, value=message)
    raise AirflowFailException(message)


@contextmanager
def failing_the_run_when_incomplete() -> Iterator[None]:
    """For the report step, the run's last task: a job with nothing to report or incomplete fails
    the task, so the run never looks successful."""
    from airflow.sdk.exceptions import AirflowFailException

    from api_poller.pipeline.report import IncompleteJob, NothingToReport

    try:
        yield
    except (NothingToReport, IncompleteJob) as exc:
        raise AirflowFailException(str(exc)) from exc
