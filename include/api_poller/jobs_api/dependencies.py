"""FastAPI dependencies of the job API: authorization, the request's job, settings, AWS clients.

Each is a small function the routes declare, and tests override (``app.dependency_overrides``).
Authentication and authorization are the api-server's own (a bearer token from
``POST /auth/token``, or the ``_token`` cookie the Airflow UI keeps after login). A job is a run
of one of the poller DAGs (``api_poller`` or a source's ``api_poller__<name>``), and access is
checked against that job's DAG by the configured auth manager (:class:`DagAccess`), as Airflow's
own DAG run routes do.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Annotated

from airflow.api_fastapi.auth.managers.base_auth_manager import ResourceMethod
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.common.dagbag import create_dag_bag
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import (
    GetUserDep,
    bearer_scheme,
    get_user,
    requires_access_dag,
)
from airflow.models.base import ID_LEN
from airflow.models.dagbag import DBDagBag
from airflow.models.dagrun import DagRun
from fastapi import Depends, HTTPException, Path, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy import ColumnElement, Select, or_, select

from api_poller import names
from api_poller.aws.clients import SqsClient
from api_poller.jobs_api.models import JobActions
from api_poller.settings import PollerSettings, load_settings

DAG_ID = names.POLLER_DAG_ID
POLLER_DAGS = f"{names.POLLER_DAG_ID} or {names.SOURCE_DAG_PREFIX}<source>"


def is_poller_dag(dag_id: str) -> bool:
    """The free-URL DAG or a source's DAG: the DAGs whose runs are jobs."""
    return dag_id == names.POLLER_DAG_ID or names.source_of_dag(dag_id) is not None


def poller_dag_filter() -> ColumnElement[bool]:
    # autoescape: the prefix's underscores are LIKE wildcards otherwise.
    return or_(
        DagRun.dag_id == names.POLLER_DAG_ID,
        DagRun.dag_id.startswith(names.SOURCE_DAG_PREFIX, autoescape=True),
    )


@dataclass(frozen=True)
class DagAccess:
    """What the request's user may do with which DAG: the auth manager's answer, per DAG."""

    request: Request
    user: BaseUser

    def require(self, method: ResourceMethod, entity: DagAccessEntity, dag_id: str) -> None:
        """403 unless the user may ``method`` the DAG's ``entity`` (Airflow's own check)."""
        requires_access_dag(method, entity, param_dag_id=dag_id)(self.request, self.user)

    def allows(self, method: ResourceMethod, entity: DagAccessEntity, dag_id: str) -> bool:
        """Whether :meth:`require` would let the user through (the page shows only those actions)."""
        try:
            self.require(method, entity, dag_id)
        except HTTPException as exc:
            if exc.status_code == status.HTTP_403_FORBIDDEN:
                return False
            raise
        return True

    def readable_dag_ids(self) -> set[str]:
        """The DAGs whose runs the user may read."""
        from airflow.api_fastapi.app import get_auth_manager

        return get_auth_manager().get_authorized_dag_ids(user=self.user, method="GET")


# Each action needs Airflow's own permission for what it does to the job's DAG.
START_RUNS: tuple[ResourceMethod, DagAccessEntity] = ("POST", DagAccessEntity.RUN)  # replay, redrive
CLEAR_TASKS: tuple[ResourceMethod, DagAccessEntity] = ("PUT", DagAccessEntity.TASK_INSTANCE)  # rerun failed


def job_actions(access: DagAccess, dag_id: str) -> JobActions:
    """The actions the user may take on a job of ``dag_id`` (the page shows their buttons)."""
    may_start_runs = access.allows(*START_RUNS, dag_id)
    return JobActions(
        Replay=may_start_runs, Redrive=may_start_runs, RerunFailed=access.allows(*CLEAR_TASKS, dag_id)
    )


def get_dag_access(request: Request, user: GetUserDep) -> DagAccess:
    return DagAccess(request, user)


DagAccessDep = Annotated[DagAccess, Depends(get_dag_access)]


def cookie_post_guard(request: Request) -> None:
    """A POST authenticated by the UI's cookie must be a JSON request (never a cross-site form)."""
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        return
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            "Send Content-Type: application/json (or authenticate with a bearer token)",
        )


json_post_only = Depends(cookie_post_guard)


async def optional_user(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
) -> BaseUser | None:
    """The logged-in user, or None (the page then sends the visitor to Airflow's login)."""
    try:
        return await get_user(request, None, credentials)
    except HTTPException:
        return None


def get_settings() -> PollerSettings:
    return load_settings()


SettingsDep = Annotated[PollerSettings, Depends(get_settings)]


def get_sqs_client(settings: SettingsDep) -> SqsClient:
    """SQS through the deployment's AWS connection (the api-server reads it like a task would)."""
    from airflow.providers.amazon.aws.hooks.sqs import SqsHook

    return SqsHook(aws_conn_id=settings.aws_conn_id).conn


SqsDep = Annotated[SqsClient, Depends(get_sqs_client)]


@cache
def _dag_bag() -> DBDagBag:
    # The api-server keeps its DagBag on the root app's state, which a mounted app cannot see;
    # this is the same cached, database-backed bag.
    return create_dag_bag()


def get_dag_bag() -> DBDagBag:
    return _dag_bag()


DagBagDep = Annotated[DBDagBag, Depends(get_dag_bag)]


def job_runs() -> Select[DagRun]:
    """Runs of every poller DAG: the jobs."""
    return select(DagRun).where(poller_dag_filter())


def valid_job_id(
    job_id: Annotated[str, Path(description="The job id: the run id of its poller DAG.")],
) -> str:
    """The job id from the path, refused up front when no run id can look like it."""
    if len(job_id) > ID_LEN:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"Job id is {len(job_id)} characters long; job ids (DAG run ids) have at most {ID_LEN}",
        )
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in job_id):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "Job id must not contain control characters (such as NUL)"
        )
    return job_id


JobId = Annotated[str, Depends(valid_job_id)]


def valid_dag_id(
    dag_id: Annotated[
        str | None,
        Query(
            max_length=ID_LEN,
            description="The job's DAG, when two poller DAGs have a run with the same id "
            f"(scheduled runs of two sources, say): {POLLER_DAGS}.",
        ),
    ] = None,
) -> str | None:
    if dag_id is not None and not is_poller_dag(dag_id):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"dag_id {dag_id!r} is not a poller DAG: jobs are runs of {POLLER_DAGS}",
        )
    return dag_id


def get_run(
    job_id: JobId,
    session: SessionDep,
    access: DagAccessDep,
    dag_id: Annotated[str | None, Depends(valid_dag_id)],
) -> DagRun:
    """The job's DAG run, whichever poller DAG it belongs to, if the user may read that DAG's runs;
    404 if there is none, 409 if several DAGs have a run with that id (``?dag_id=`` chooses)."""
    query = job_runs().where(DagRun.run_id == job_id)
    if dag_id is not None:
        query = query.where(DagRun.dag_id == dag_id)
    runs = session.scalars(query.order_by(DagRun.dag_id).limit(10)).all()
    if not runs:
        where = f"the {dag_id} DAG has" if dag_id else f"no poller DAG ({POLLER_DAGS}) has"
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"Job {job_id!r} not found: {where} a run with that id"
        )
    if len(runs) > 1:
        dags = ", ".join(run.dag_id for run in runs)
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"Job id {job_id!r} names runs of several DAGs ({dags}): add ?dag_id=<one of them>",
        )
    [run] = runs
    access.require("GET", DagAccessEntity.RUN, run.dag_id)
    return run


JobRun = Annotated[DagRun, Depends(get_run)]
