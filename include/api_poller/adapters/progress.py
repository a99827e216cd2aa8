"""A job's progress read straight from Airflow's metadata database (for servers and tests).

Tasks publish page statuses as XComs; this reads every ``page_status`` XCom of the DAG run at
once, so it answers at any moment of the run, with the same merge rules as the report step.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

from api_poller import names
from api_poller.core.lifecycle import merge_page_statuses, summarize

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


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


def load_published_statuses(dag_id: str, run_id: str, session: Session) -> dict[tuple[str, int], Any]:
    """Each status-publishing task instance's ``page_status`` XCom, by (task id, map index)."""
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    query = select(XComModel.task_id, XComModel.map_index, XComModel.value).where(
        XComModel.dag_id == dag_id, XComModel.run_id == run_id, XComModel.key == names.STATUS_KEY
    )
    return {(row.task_id, row.map_index): XComModel.deserialize_value(row) for row in session.execute(query)}


def _retried_without_statuses(
    dag_id: str, run_id: str, session: Session, published: Collection[tuple[str, int]]
) -> list[tuple[str, int]]:
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


def _read_checkpoints(run_id: str, missing: list[tuple[str, int]]) -> list[dict[str, Any] | None]:
    """The S3 checkpoints of ``missing`` task instances (the deployment's raw bucket)."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from api_poller.aws.status_checkpoint import StatusCheckpoint
    from api_poller.settings import load_settings

    settings = load_settings()
    s3 = S3Hook(aws_conn_id=settings.aws_conn_id).get_conn()
    return [StatusCheckpoint(s3, settings.raw_bucket, run_id, task, index).read() for task, index in missing]


CheckpointReader = Callable[[str, list[tuple[str, int]]], list[dict[str, Any] | None]]


def load_page_statuses(
    dag_id: str,
    run_id: str,
    session: Session | None = None,
    read_checkpoints: CheckpointReader = _read_checkpoints,
    published: Mapping[tuple[str, int], Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Each page's latest record in the run (from ``published``, the run's status documents, if
    the caller has read them already).

    A task instance whose new try has not published yet counts with its S3 checkpoint (what its
    earlier try last published), so no page falls back meanwhile; only then is S3 read.
    """
    if session is None:
        from airflow.utils.session import create_session

        with create_session() as own_session:
            return load_page_statuses(dag_id, run_id, own_session, read_checkpoints, published)
    if published is None:
        published = load_published_statuses(dag_id, run_id, session)
    documents: list[Any] = list(published.values())
    missing = _retried_without_statuses(dag_id, run_id, session, published)
    if missing:
        documents.extend(read_checkpoints(run_id, missing))
    return merge_page_statuses(documents)


def load_plan(dag_id: str, run_id: str, session: Session) -> list[dict[str, Any]] | None:
    """The plan task's return value (one entry per fetch task, its batch a page range; see
    ``jobs_api.page_details.planned_pages``), or None before it."""
    values = _xcom_values(dag_id, run_id, names.RETURN_VALUE_KEY, session, task_id=names.PLAN_TASK)
    return values[0] if values else None


def job_progress(
    planned_totals: list[Any], statuses: Mapping[str, Mapping[str, Any]], walk_ended: bool
) -> dict[str, int | bool]:
    """The progress document from the plan's ``total_pages`` XCom (none before the plan; None for
    a walk), the pages' latest records and whether a walk's fetch task has ended.

    A walked source job (a cursor or next link: the total is unknown until the walk ends) adds
    ``TotalKnown``: while the walk goes on, Total is the pages discovered so far and TotalKnown is
    false; once the walk's fetch task has ended, Total is final and TotalKnown true. A planned job's
    document is the seed's, unchanged (its Total is known from the plan; 0 before it).
    """
    if planned_totals and planned_totals[0] is None:  # a walk
        document: dict[str, int | bool] = dict(summarize(statuses, len(statuses)))
        document["TotalKnown"] = walk_ended
        return document
    return dict(summarize(statuses, int(planned_totals[0]) if planned_totals else 0))


def load_job_progress(
    dag_id: str,
    run_id: str,
    session: Session | None = None,
    statuses: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, int | bool]:
    """The progress document of one job (DAG run), see :func:`job_progress`; pass the job's merged
    ``statuses`` if the caller has them already (they are the bulk of what is read)."""
    if session is None:
        from airflow.utils.session import create_session

        with create_session() as own_session:
            return load_job_progress(dag_id, run_id, own_session, statuses)
    totals = _xcom_values(dag_id, run_id, names.TOTAL_PAGES_KEY, session, task_id=names.PLAN_TASK)
    walk_ended = bool(
        totals
        and totals[0] is None
        and _xcom_values(dag_id, run_id, names.RETURN_VALUE_KEY, session, task_id=names.FETCH_TASK)
    )
    if statuses is None:
        statuses = load_page_statuses(dag_id, run_id, session)
    return job_progress(totals, statuses, walk_ended)


def load_plan_error(dag_id: str, run_id: str, session: Session) -> str | None:
    """Why the plan task failed, in words (its ``plan_error`` XCom), or None if it did not."""
    values = _xcom_values(dag_id, run_id, names.PLAN_ERROR_KEY, session, task_id=names.PLAN_TASK)
    return str(values[0]) if values and values[0] else None
