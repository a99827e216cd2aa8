"""Whether a job's status is gone because the retention purged it (the job API's 410 Gone)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from api_poller import names
from api_poller.operations.retention.timestamps import as_utc, days_phrase

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def job_expired(
    job_id: str,
    end_date: datetime | None,
    status_present: bool,
    *,
    retention_days: float,
    now: datetime | None = None,
) -> str | None:
    """Why a job's status is gone, or None when it is not an expired job.

    A job has expired when its run ended at least ``retention_days`` ago and none of its status
    XComs are left. A job still running, one whose status is still there (the purge may keep it a
    little longer, see :func:`~api_poller.operations.retention.status_purge.purge_cutoff`), or
    one that ended recently without writing any status (it failed before planning) has not
    expired. The message suits a 410 Gone answer.
    """
    end = as_utc(end_date)
    if status_present or end is None:
        return None
    now = as_utc(now) or datetime.now(UTC)
    if now - end < timedelta(days=retention_days):
        return None
    return (
        f"job {job_id} expired: its status was purged after {days_phrase(retention_days)} "
        f"(the job ended {end:%Y-%m-%d %H:%M} UTC)"
    )


def has_status(run_id: str, session: Session, dag_id: str = names.POLLER_DAG_ID) -> bool:
    """Whether any XCom of the job's run is left (for servers with database access, e.g. the job API)."""
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    query = select(XComModel.key).where(XComModel.dag_id == dag_id, XComModel.run_id == run_id).limit(1)
    return session.execute(query).first() is not None
