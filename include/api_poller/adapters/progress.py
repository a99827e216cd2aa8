"""A job's progress read straight from Airflow's metadata database (for servers and tests).

Tasks publish page statuses as XComs (``core.status_document``): per task instance a small
summary (``page_status``) and chunks of page records (``page_status.<chunk>``). Progress, failure
reasons and the timeline come from the summaries alone (``load_job_status``: one row per task
instance, whatever the job's size); a page's records come from the chunks that hold it
(``load_page_records``). A task instance whose new try has not published yet counts with its S3
checkpoint (what its earlier try last published), so no page falls back meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from api_poller import names
from api_poller.core.lifecycle import merge_page_statuses
from api_poller.core.page_bits import page_number
from api_poller.core.status_document import (
    JobStatus,
    TaskStatus,
    chunk_key,
    chunk_of,
    read_chunk,
    read_summary,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

TaskInstanceId = tuple[str, int]  # (task id, map index)
StatusRecords = dict[str, dict[str, Any]]


def _xcom_values(
    dag_id: str, run_id: str, key: str, session: Session, task_id: str | None = None
) -> list[Any]:
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    query = select(XComModel.value).where(
        XComModel.dag_id == dag_id, XComModel.run_id == run_id, XComModel.key == key
    )
    if task_id is not None:
        query = query.where(XComModel.task_id == task_id)
    return [XComModel.deserialize_value(row) for row in session.execute(query)]


def load_published_statuses(dag_id: str, run_id: str, session: Session) -> dict[TaskInstanceId, TaskStatus]:
    """Each status-publishing task instance's summary (``page_status`` XCom), by (task id, map index)."""
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    query = select(XComModel.task_id, XComModel.map_index, XComModel.value).where(
        XComModel.dag_id == dag_id, XComModel.run_id == run_id, XComModel.key == names.STATUS_KEY
    )
    found: dict[TaskInstanceId, TaskStatus] = {}
    for row in session.execute(query):
        try:
            found[(row.task_id, row.map_index)] = read_summary(XComModel.deserialize_value(row))
        except ValueError as error:
            log.warning("ignoring the malformed page_status of %s[%s]: %s", row.task_id, row.map_index, error)
    return found


def _retried_without_statuses(
    dag_id: str, run_id: str, session: Session, published: Collection[TaskInstanceId]
) -> list[TaskInstanceId]:
    """Status-publishing task instances that ran before (a later try, or rescheduled) but have no
    status XCom now: Airflow deleted it when the new try started, and the try has not published."""
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import or_, select

    query = select(TaskInstance.task_id, TaskInstance.map_index).where(
        TaskInstance.dag_id == dag_id,
        TaskInstance.run_id == run_id,
        TaskInstance.task_id.in_(names.STATUS_TASK_IDS),
        or_(TaskInstance.try_number > 1, TaskInstance.state == "up_for_reschedule"),
    )
    return [(task, index) for task, index in session.execute(query) if (task, index) not in published]


class Checkpoints:
    """The S3 checkpoints of task instances (the deployment's raw bucket), read only for task
    instances that have no status XCom (see ``_retried_without_statuses``)."""

    def __init__(self, run_id: str) -> None:
        self._run_id = run_id
        self._s3: Any = None

    def _checkpoint(self, task_instance: TaskInstanceId) -> Any:
        from api_poller.aws.status_checkpoint import StatusCheckpoint
        from api_poller.settings import load_settings

        settings = load_settings()
        if self._s3 is None:
            from airflow.providers.amazon.aws.hooks.s3 import S3Hook

            self._s3 = S3Hook(aws_conn_id=settings.aws_conn_id).get_conn()
        return StatusCheckpoint(self._s3, settings.raw_bucket, self._run_id, *task_instance)

    def summaries(self, missing: list[TaskInstanceId]) -> dict[TaskInstanceId, TaskStatus]:
        found = {}
        for task_instance in missing:
            if (summary := self._checkpoint(task_instance).read_summary()) is not None:
                found[task_instance] = summary
        return found

    def records(self, task_instance: TaskInstanceId, chunks: Iterable[int]) -> StatusRecords:
        return self._checkpoint(task_instance).read_chunks(chunks)


@dataclass(frozen=True)
class JobSummaries:
    """Every task instance's summary of a run (published, else checkpointed), read once: the job's
    status is merged from them, and a page's records are found through them."""

    summaries: dict[TaskInstanceId, TaskStatus]
    checkpointed: set[TaskInstanceId]  # those read from their S3 checkpoint
    checkpoints: Checkpoints

    def status(self) -> JobStatus:
        return JobStatus.merge(self.summaries.values())


def load_job_summaries(
    dag_id: str,
    run_id: str,
    session: Session,
    checkpoints: Checkpoints | None = None,
    published: Mapping[TaskInstanceId, TaskStatus] | None = None,
) -> JobSummaries:
    """The run's summaries (``published``, if the caller has read them already)."""
    summaries = dict(published if published is not None else load_published_statuses(dag_id, run_id, session))
    checkpoints = checkpoints or Checkpoints(run_id)
    missing = _retried_without_statuses(dag_id, run_id, session, summaries)
    from_checkpoints = checkpoints.summaries(missing) if missing else {}
    summaries.update(from_checkpoints)
    return JobSummaries(summaries, set(from_checkpoints), checkpoints)


def load_job_status(
    dag_id: str,
    run_id: str,
    session: Session,
    checkpoints: Checkpoints | None = None,
    published: Mapping[TaskInstanceId, TaskStatus] | None = None,
) -> JobStatus:
    """Every page's state in the run, merged from the task instances' summaries."""
    return load_job_summaries(dag_id, run_id, session, checkpoints, published).status()


def load_page_records(
    dag_id: str,
    run_id: str,
    session: Session | None = None,
    pages: Iterable[int] | None = None,
    checkpoints: Checkpoints | None = None,
    published: Mapping[TaskInstanceId, TaskStatus] | None = None,
    job: JobSummaries | None = None,
) -> StatusRecords:
    """The latest record of each page of ``pages`` (page numbers; every page of the run if None),
    merged across the task instances: reads only the chunks that hold them. Pass the run's
    summaries as ``job`` if the caller has them (they are not read again)."""
    if session is None:
        from airflow.utils.session import create_session

        with create_session() as own_session:
            return load_page_records(dag_id, run_id, own_session, pages, checkpoints, published, job)
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    wanted = None if pages is None else set(pages)
    job = job or load_job_summaries(dag_id, run_id, session, checkpoints, published)
    query = select(XComModel.value).where(XComModel.dag_id == dag_id, XComModel.run_id == run_id)
    if wanted is None:
        query = query.where(XComModel.key.startswith(f"{names.STATUS_KEY}.", autoescape=True))
    else:
        keys = {chunk_key(names.STATUS_KEY, chunk_of(number)) for number in wanted}
        query = query.where(XComModel.key.in_(sorted(keys)))
    documents: list[Any] = [read_chunk(XComModel.deserialize_value(row)) for row in session.execute(query)]
    for task_instance, summary in job.summaries.items():
        if summary.records is not None:  # a summary of the earlier format holds its records
            documents.append(summary.records)
        elif task_instance in job.checkpointed:
            chunks = (
                summary.chunks
                if wanted is None
                else sorted({chunk_of(n) for n in wanted} & set(summary.chunks))
            )
            documents.append(job.checkpoints.records(task_instance, chunks))
    records = merge_page_statuses(document for document in documents if isinstance(document, dict))
    if wanted is None:
        return records
    return {page: record for page, record in records.items() if page_number(page) in wanted}


def load_page_statuses(
    dag_id: str,
    run_id: str,
    session: Session | None = None,
    checkpoints: Checkpoints | None = None,
    published: Mapping[TaskInstanceId, TaskStatus] | None = None,
) -> StatusRecords:
    """Each page's latest record in the run: every chunk (for one-off uses: repair, tests)."""
    return load_page_records(dag_id, run_id, session, None, checkpoints, published)


def load_plan(dag_id: str, run_id: str, session: Session) -> list[dict[str, Any]] | None:
    """The plan task's return value (one entry per fetch task, its batch a page range; see
    ``jobs_api.page_details.planned_pages``), or None before it."""
    values = _xcom_values(dag_id, run_id, names.RETURN_VALUE_KEY, session, task_id=names.PLAN_TASK)
    return values[0] if values else None


def job_progress(planned_totals: list[Any], status: JobStatus, walk_ended: bool) -> dict[str, int | bool]:
    """The progress document from the plan's ``total_pages`` XCom (none before the plan; None for
    a walk), the pages' merged status and whether a walk's fetch task has ended.

    A walked source job (a cursor or next link: the total is unknown until the walk ends) adds
    ``TotalKnown``: while the walk goes on, Total is the pages discovered so far and TotalKnown is
    false; once the walk's fetch task has ended, Total is final and TotalKnown true. A planned job's
    document is the seed's, unchanged (its Total is known from the plan; 0 before it).
    """
    if planned_totals and planned_totals[0] is None:  # a walk
        document: dict[str, int | bool] = dict(status.progress(status.recorded.bit_count()))
        document["TotalKnown"] = walk_ended
        return document
    return dict(status.progress(int(planned_totals[0]) if planned_totals else 0))


def load_job_progress(
    dag_id: str, run_id: str, session: Session | None = None, status: JobStatus | None = None
) -> dict[str, int | bool]:
    """The progress document of one job (DAG run), see :func:`job_progress`; pass the job's
    merged ``status`` if the caller has it already."""
    if session is None:
        from airflow.utils.session import create_session

        with create_session() as own_session:
            return load_job_progress(dag_id, run_id, own_session, status)
    totals = _xcom_values(dag_id, run_id, names.TOTAL_PAGES_KEY, session, task_id=names.PLAN_TASK)
    walk_ended = bool(
        totals
        and totals[0] is None
        and _xcom_values(dag_id, run_id, names.RETURN_VALUE_KEY, session, task_id=names.FETCH_TASK)
    )
    if status is None:
        status = load_job_status(dag_id, run_id, session)
    return job_progress(totals, status, walk_ended)


def load_plan_error(dag_id: str, run_id: str, session: Session) -> str | None:
    """Why the plan task failed, in words (its ``plan_error`` XCom), or None if it did not."""
    values = _xcom_values(dag_id, run_id, names.PLAN_ERROR_KEY, session, task_id=names.PLAN_TASK)
    return str(values[0]) if values and values[0] else None
