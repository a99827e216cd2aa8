"""FastAPI dependencies of the job API: authorization, the request's job, settings, AWS clients.

Each is a small function the routes declare, and tests override (``app.dependency_overrides``).
Authentication and authorization are the api-server's own (a bearer token from
``POST /auth/token``, or the ``_token`` cookie the Airflow UI keeps after login), checked against
the ``api_poller`` DAG by the configured auth manager.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated

from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.common.dagbag import create_dag_bag
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import bearer_scheme, get_user, requires_access_dag
from airflow.models.base import ID_LEN
from airflow.models.dagbag import DBDagBag
from airflow.models.dagrun import DagRun
from fastapi import Depends, HTTPException, Path, Request, status
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy import Select, select

from api_poller import names
from api_poller.aws.clients import SqsClient
from api_poller.settings import PollerSettings, load_settings

DAG_ID = names.POLLER_DAG_ID

can_read_runs = Depends(requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=DAG_ID))
can_read_tasks = Depends(requires_access_dag("GET", DagAccessEntity.TASK_INSTANCE, param_dag_id=DAG_ID))
can_start_runs = Depends(requires_access_dag("POST", DagAccessEntity.RUN, param_dag_id=DAG_ID))


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
    return select(DagRun).where(DagRun.dag_id == DAG_ID)


def valid_job_id(
    job_id: Annotated[str, Path(description="The job id: the api_poller DAG run id.")],
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


def get_run(job_id: JobId, session: SessionDep) -> DagRun:
    """The job's DAG run, or 404."""
    run = session.scalar(job_runs().where(DagRun.run_id == job_id))
    if run is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"Job {job_id!r} not found: the {DAG_ID} DAG has no run with that id"
        )
    return run


JobRun = Annotated[DagRun, Depends(get_run)]
