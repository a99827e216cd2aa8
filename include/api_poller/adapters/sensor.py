"""The process step on Airflow: an SqsSensor that runs the job's page consumer.

The consuming itself (receive, process, delete, dead letters, redeliveries) is
``api_poller.pipeline.consume``; this module only adapts it to Airflow: it waits for the plan and
the queue URLs in XCom, tells the consumer about the fetch tasks through the Task SDK, publishes
the page statuses to XCom and turns the consumer's outcome into the sensor's answer.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, NoReturn

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.amazon.aws.sensors.sqs import SqsSensor
from airflow.sdk import Context, timezone
from airflow.sdk.exceptions import AirflowRescheduleException, AirflowSkipException
from airflow.sdk.types import RuntimeTaskInstanceProtocol
from botocore.config import Config

from api_poller import names
from api_poller.adapters.lineage import report_consume_lineage
from api_poller.adapters.status_publishing import checkpointed_recorder, published_status
from api_poller.core.lifecycle import StatusRecorder
from api_poller.observability.metrics import JobMetrics
from api_poller.pipeline.consume import PageConsumer, RunOutcome, plan_page_ids
from api_poller.settings import PollerSettings

FINISHED_TI_STATES = ["success", "failed", "skipped", "upstream_failed", "removed"]
ACTIVE_TI_STATES = ["queued", "running", "deferred", "restarting"]
NOT_SUCCEEDED_TI_STATES = ["failed", "upstream_failed", "skipped", "removed"]


def count_task_instances(ti: RuntimeTaskInstanceProtocol, task_ids: list[str], states: list[str]) -> int:
    """Task instances of this run among ``task_ids`` in one of ``states``."""
    return ti.get_ti_count(dag_id=ti.dag_id, task_ids=task_ids, run_ids=[ti.run_id], states=states)


class FetchTasks:
    """The fetch step as the consumer sees it: its task instances and their page statuses."""

    def __init__(self, ti: RuntimeTaskInstanceProtocol, task_id: str, tasks: int) -> None:
        self._ti, self._task_id, self._tasks = ti, task_id, tasks

    def fetch_finished(self) -> bool:
        return count_task_instances(self._ti, [self._task_id], FINISHED_TI_STATES) >= self._tasks

    def fetch_running(self) -> bool:
        return count_task_instances(self._ti, [self._task_id], ACTIVE_TI_STATES) > 0

    def fetch_records(self) -> Mapping[str, Mapping[str, Any]]:
        """Each page's state in the fetch tasks (from their summaries: no page details)."""
        states = published_status(self._ti, [self._task_id]).states()
        return {page: {"state": state} for page, state in states.items()}


def pooled_config(aws_conn_id: str | None, workers: int) -> Config:
    """The botocore config of the connection (its extra's ``config_kwargs``: proxies, retries,
    timeouts...) with a pooled connection per worker thread (botocore keeps 10 by default). A
    hook given a config ignores the connection's, so the two are merged here."""
    pool = max(workers + 4, 10)
    configured = S3Hook(aws_conn_id=aws_conn_id).conn_config.botocore_config
    if configured is None:
        return Config(max_pool_connections=pool)
    pool = max(pool, getattr(configured, "max_pool_connections", None) or 0)  # (not in the stubs)
    return configured.merge(Config(max_pool_connections=pool))


class PageMessageSensor(SqsSensor):
    """Consumes the job's page messages until every page of the job is settled.

    It runs alongside the fetch tasks: downstream of them (clearing a fetch task clears it too)
    with trigger rule ``always``, it starts at once and itself waits for the plan and the queue
    URLs (skipped if either step did not succeed). It succeeds once every page of the plan (for a
    walked source, every page the walk announced or recorded, once it ended) is
    processed, dead-lettered, or (once every fetch task has ended) failed or never enqueued by its
    fetch task, and times out after ``timeout`` otherwise. Messages are never deleted on
    reception (the provider's default), or the dead-letter queue could never work.

    :param job_id: the job (the DAG run id) whose pages it waits for (templated).
    :param processed_bucket: where processed pages are written.
    :param raw_bucket: where the raw pages and the consumers' error notes are.
    :param max_receive_count: the queue's maxReceiveCount, quoted in a dead-lettered page's reason.
    :param retry_delay_seconds: how soon a message that failed processing is offered again.
    :param drain_seconds: how long one poke consumes (or waits for the plan) before returning.
    :param workers: pages processed at once (threads), each with a pooled S3 connection.
    :param page_bytes_in_flight: bytes of raw pages the workers hold in memory at once, together.
    :param status_flush_seconds: how often the page statuses are published to XCom.
    :param resources_task_id: the task whose XCom holds the queue URLs.
    :param plan_task_id: the task whose XCom holds the plan.
    :param fetch_task_id: the (mapped) fetch task whose instances and statuses tell what to expect.
    :param housekeeping_seconds: how often an idle consumer looks around (S3, DLQ, fetch statuses).
    :param yield_when_idle_seconds: when set, a poke that has had nothing to process for this long
        while no fetch task is running (and they have not all finished) ends by rescheduling the
        sensor, freeing its slot; likewise while waiting for the plan when neither upstream step is
        running and they are not both done. For runners that run one task at a time (``dag.test``),
        where a waiting sensor would block the tasks it waits for. Leave unset on a scheduler: a
        poke-mode sensor that reschedules itself can be failed by a scheduler/executor race
        (seen on Airflow 3.3).
    """

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
        yield_when_idle_seconds: float | None = None,
        page_bytes_in_flight: int = PollerSettings.page_bytes_in_flight,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("mode", "poke")
        kwargs.setdefault("trigger_rule", "always")
        # The queue URLs come from the resources step (see _build_consumer).
        kwargs.setdefault("sqs_queue", "")
        super().__init__(delete_message_on_reception=False, deferrable=False, **kwargs)
        self.job_id = job_id
        self.processed_bucket = processed_bucket
        self.raw_bucket = raw_bucket
        self.max_receive_count = max_receive_count
        self.retry_delay_seconds = retry_delay_seconds
        self.drain_seconds = drain_seconds
        self.workers = workers
        self.status_flush_seconds = status_flush_seconds
        self.resources_task_id = resources_task_id
        self.plan_task_id = plan_task_id
        self.fetch_task_id = fetch_task_id
        self.housekeeping_seconds = housekeeping_seconds
        self.page_bytes_in_flight = page_bytes_in_flight
        self.yield_when_idle_seconds = yield_when_idle_seconds
        self._consumer: PageConsumer | None = None
        self._recorder: StatusRecorder | None = None

    def poke(self, context: Context) -> bool:
        ti = context["ti"]
        if self._consumer is None:
            ready = self._wait_for_plan(ti)
            if ready is None:
                return False
            self._consumer = self._build_consumer(ti, *ready)
        try:
            outcome = self._consumer.run(self.drain_seconds, self.yield_when_idle_seconds)
        finally:
            if self._recorder is not None:
                self._recorder.flush()
        if outcome is RunOutcome.GAVE_WAY:
            self.log.info("no fetch task is running: rescheduling in %ss", self.poke_interval)
            self._reschedule()
        return outcome is RunOutcome.SETTLED

    def _wait_for_plan(self, ti: RuntimeTaskInstanceProtocol) -> tuple[dict[str, str], list[dict]] | None:
        """The queue URLs and the plan, once both steps succeeded; None if they are not done in
        ``drain_seconds``; skip if one did not succeed."""
        deadline = time.monotonic() + self.drain_seconds
        waiting_since = time.monotonic()
        steps = [self.resources_task_id, self.plan_task_id]
        while time.monotonic() < deadline:
            resources = ti.xcom_pull(task_ids=self.resources_task_id)
            plan = ti.xcom_pull(task_ids=self.plan_task_id)
            if resources and plan is not None:
                return resources, plan
            if count_task_instances(ti, steps, NOT_SUCCEEDED_TI_STATES):
                raise AirflowSkipException(
                    "nothing to process: the plan or the resources step did not succeed"
                )
            patience = self.yield_when_idle_seconds
            if patience and time.monotonic() - waiting_since >= patience / 2:
                waiting_since = time.monotonic()
                # Not both done (their XComs may be a moment behind their state) and none running:
                # one may not even have started (prepare_resources done, plan still scheduled).
                done = count_task_instances(ti, steps, ["success"])
                if done < len(steps) and not count_task_instances(ti, steps, ACTIVE_TI_STATES):
                    self.log.info("waiting for the plan, which is not running: rescheduling")
                    self._reschedule()
            time.sleep(0.25)
        return None

    def _build_consumer(
        self, ti: RuntimeTaskInstanceProtocol, resources: dict[str, str], plan: list[dict]
    ) -> PageConsumer:
        self.sqs_queue = resources["queue_url"]
        s3 = S3Hook(
            aws_conn_id=self.aws_conn_id, config=pooled_config(self.aws_conn_id, self.workers)
        ).get_conn()
        self._recorder = checkpointed_recorder(ti, s3, self.raw_bucket, self.status_flush_seconds)
        pages, discover = plan_page_ids(plan)
        # Once per try, not per page: what the consumer reads and writes.
        report_consume_lineage(
            raw_bucket=self.raw_bucket,
            processed_bucket=self.processed_bucket,
            job_id=self.job_id,
            aws_conn_id=self.aws_conn_id,
        )
        return PageConsumer(
            s3=s3,
            sqs=self.hook.conn,
            queue_url=resources["queue_url"],
            dead_letter_queue_url=resources["dead_letter_queue_url"],
            raw_bucket=self.raw_bucket,
            processed_bucket=self.processed_bucket,
            job_id=self.job_id,
            pages=pages,
            discover_pages=discover,
            recorder=self._recorder,
            fetch=FetchTasks(ti, self.fetch_task_id, tasks=len(plan)),
            max_receive_count=self.max_receive_count,
            retry_delay_seconds=self.retry_delay_seconds,
            wait_time_seconds=self.wait_time_seconds,
            workers=self.workers,
            housekeeping_seconds=self.housekeeping_seconds,
            page_bytes_in_flight=self.page_bytes_in_flight,
            metrics=JobMetrics(names.source_of_dag(ti.dag_id) or ti.dag_id),
        )

    def _reschedule(self) -> NoReturn:
        raise AirflowRescheduleException(timezone.utcnow() + timedelta(seconds=self.poke_interval))
