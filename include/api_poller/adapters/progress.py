"""A job's progress read straight from Airflow's metadata database (for servers and tests).

Tasks publish page statuses as XComs; this reads every ``page_status`` XCom of the DAG run at
once, so it answers at any moment of the run, with the same merge rules as the report step.
"""

from __future__ import annotations

from collections.abc import Mapping
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


def load_page_statuses(dag_id: str, run_id: str, session: Session | None = None) -> dict[str, dict[str, Any]]:
    """Each page's latest record in the run."""
    if session is None:
        from airflow.utils.session import create_session

        with create_session() as own_session:
            return load_page_statuses(dag_id, run_id, own_session)
    return merge_page_statuses(_xcom_values(dag_id, run_id, names.STATUS_KEY, session))


def load_plan(dag_id: str, run_id: str, session: Session) -> list[dict[str, Any]] | None:
    """The plan task's return value (one entry per fetch task, its pages), or None before it."""
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
