"""The job API and the live progress page, served by Airflow's own api-server.

``plugins/api_poller_plugin.py`` mounts the app built here under ``/api-poller``:

* ``POST /jobs`` starts a job (a manual run of the ``api_poller`` DAG, created the way the core
  REST API ``POST /api/v2/dags/{dag_id}/dagRuns`` does) and answers with the AWS sample's
  ``Entries[0].EventId`` shape;
* ``GET /jobs``, ``GET /jobs/{id}``, ``GET /jobs/{id}/tasks`` read a job's progress and pages from
  the ``page_status`` XComs (``api_poller.adapters.progress``);
* ``POST /jobs/{id}/replay`` starts a new job with the conf of an earlier one;
* ``GET /`` is the progress page that Airflow's navigation embeds (``external_views``).

Every route authenticates with the api-server's own security dependencies (a bearer token from
``POST /auth/token``, or the ``_token`` cookie the Airflow UI keeps after login) and checks the
user's access to the ``api_poller`` DAG through the configured auth manager.

Airflow's server-side modules are imported inside :func:`create_app`, so importing this module
(the plugin does, in every Airflow process that loads plugins) stays cheap. (No ``from __future__
import annotations`` here: FastAPI reads the route functions' annotations at runtime, and those
name types imported inside :func:`create_app`.)
"""

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

from api_poller import names
from api_poller.core.errors import InvalidJobRequest
from api_poller.core.job_request import MAX_CONCURRENCY, MAX_FETCH_TASKS
from api_poller.core.lifecycle import PROGRESS_FIELDS, PageState
from api_poller.partner.client import validate_job_url

DAG_ID = names.POLLER_DAG_ID
URL_PREFIX = "/api-poller"
PLUGIN_NAME = "api_poller"  # the plugin, not the DAG
PAGE_ROUTE = "api-poller-jobs"
PAGE_TITLE = "API poller jobs"
NAV_NAME = "API poller"  # the entry in Airflow's navigation (longer names are cut there)
PENDING = "Pending"  # a planned page no task has touched yet
ACTIVE_RUN_STATES = ("queued", "running")
MAX_PAGE_SIZE = 1_000_000
DEFAULT_LIST_LIMIT = 25
MAX_LIST_LIMIT = 100
PAGE_TEMPLATE = Path(__file__).with_name("progress_page.html")


class JobRequest(BaseModel):
    """The body of ``POST /jobs``: the same choices as the DAG's Params."""

    model_config = ConfigDict(extra="forbid")

    url: StrictStr = Field(description="The partner's paged endpoint (http or https).")
    page_size: Annotated[StrictInt, Field(ge=1, le=MAX_PAGE_SIZE)] | None = Field(
        default=None, description="Records per request; default: the API's maxRecordsPerPage."
    )
    concurrency: Annotated[StrictInt, Field(ge=1, le=MAX_CONCURRENCY)] | None = Field(
        default=None, description="Requests in flight for this job; default: the DAG's Param default."
    )
    fetch_tasks: Annotated[StrictInt, Field(ge=1, le=MAX_FETCH_TASKS)] | None = Field(
        default=None, description="Mapped fetch tasks sharing the pages; default: the DAG's Param default."
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        try:
            return validate_job_url(value)
        except InvalidJobRequest as exc:
            # The message starts with "url ..." and pydantic puts "url" in the error's loc.
            raise ValueError(str(exc)) from None

    def conf(self) -> dict[str, Any]:
        """The DAG run conf: only what was given, so the DAG's Param defaults apply to the rest."""
        return self.model_dump(exclude_none=True)


class JobEntry(BaseModel):
    EventId: str


class JobStarted(BaseModel):
    """``POST /jobs`` answer; ``Entries[0].EventId`` keeps the AWS sample's jq lines working."""

    jobId: str
    Entries: list[JobEntry]
    FailedEntryCount: int = 0
    State: str
    ReplayOf: str | None = None


class JobProgress(BaseModel):
    """The seed's progress document (top-level keys) plus the run's identity and state."""

    Started: int
    PayloadSaved: int
    Enqueued: int
    SuccessfullyCompleted: int
    FailedToComplete: int
    Total: int
    JobId: str
    State: str | None
    Conf: dict[str, Any]
    TriggeredBy: str | None
    QueuedAt: datetime | None
    StartDate: datetime | None
    EndDate: datetime | None
    RunPath: str = Field(description="The DAG run in the Airflow UI, relative to Airflow's base URL.")
    Expired: str | None = Field(
        default=None, description="Why the counts are gone: the job's status was purged (retention)."
    )


class JobList(BaseModel):
    Jobs: list[JobProgress]


class PageDetail(BaseModel):
    PageId: str
    StartAt: int | None
    Count: int | None
    FetchMapIndex: int | None = Field(description="The fetch_pages map index that fetches this page.")
    State: str = Field(description=f"A lifecycle state, or {PENDING!r} before any task touched the page.")
    UpdatedAt: datetime | None
    Attempts: int | None
    Receives: int | None
    Records: int | None
    RawLocation: str | None = Field(description="Where the raw payload was saved (deleted once processed).")
    ProcessedLocation: str | None
    Error: str | None = Field(description="The last transient error (retried).")
    Reason: str | None = Field(description="Why the page is FailedToComplete.")


class JobPages(BaseModel):
    JobId: str
    State: str | None
    Total: int
    Pages: list[PageDetail]


# -- pure helpers (no Airflow needed) ---------------------------------------------------------------


def run_path(run_id: str) -> str:
    """The DAG run's page in the Airflow UI, relative to Airflow's base URL."""
    return f"/dags/{DAG_ID}/runs/{quote(run_id, safe='')}"


def _timestamp(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(value), tz=UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def planned_pages(plan_output: Any) -> dict[str, dict[str, Any]]:
    """Page id -> StartAt, Count and fetch map index, from the plan task's return value."""
    from api_poller.core.planning import PageTask

    pages: dict[str, dict[str, Any]] = {}
    for map_index, entry in enumerate(plan_output if isinstance(plan_output, list) else []):
        for page in map(PageTask.from_dict, (entry or {}).get("batch", [])):
            pages[page.page_id] = {"StartAt": page.start_at, "Count": page.count, "FetchMapIndex": map_index}
    return pages


def page_details(
    job_id: str,
    planned: Mapping[str, Mapping[str, Any]],
    statuses: Mapping[str, Mapping[str, Any]],
    raw_bucket: str,
    processed_bucket: str,
) -> list[PageDetail]:
    """Every page of the job (planned or recorded), in page order, with where its data is.

    ``statuses`` are the merged ``page_status`` records (``api_poller.adapters.progress.load_page_statuses``).
    """
    from api_poller.core.keys import processed_key, s3_uri

    details = []
    for page in sorted(set(planned) | set(statuses)):
        plan = planned.get(page, {})
        record = statuses.get(page, {})
        state = record.get("state", PENDING)
        done_key = record.get("processed_key") or (
            processed_key(job_id, page) if state == PageState.SUCCESSFULLY_COMPLETED else None
        )
        details.append(
            PageDetail(
                PageId=page,
                StartAt=plan.get("StartAt"),
                Count=plan.get("Count"),
                FetchMapIndex=plan.get("FetchMapIndex"),
                State=state,
                UpdatedAt=_timestamp(record.get("at")),
                Attempts=_int_or_none(record.get("attempts")),
                Receives=_int_or_none(record.get("receives")),
                Records=_int_or_none(record.get("records")),
                RawLocation=s3_uri(raw_bucket, record["raw_key"]) if record.get("raw_key") else None,
                ProcessedLocation=s3_uri(processed_bucket, done_key) if done_key else None,
                Error=record.get("error"),
                # A page redriven to success after failing keeps no failure reason.
                Reason=record.get("reason") if state == PageState.FAILED_TO_COMPLETE else None,
            )
        )
    return details


def render_page(api_base: str, airflow_base: str) -> str:
    """The progress page, with where the API and the Airflow UI are."""
    config = {
        "apiBase": api_base,
        "airflowBase": airflow_base,
        "dagId": DAG_ID,
        "limit": DEFAULT_LIST_LIMIT,
        "activeStates": list(ACTIVE_RUN_STATES),
        "fields": PROGRESS_FIELDS,
    }
    # "<" escaped so the JSON cannot close the <script> element it sits in.
    payload = json.dumps(config).replace("<", "\\u003c")
    return PAGE_TEMPLATE.read_text(encoding="utf-8").replace("__API_POLLER_CONFIG__", payload)


# -- the app ----------------------------------------------------------------------------------------


def create_app():
    """The FastAPI app the plugin mounts on the api-server under ``URL_PREFIX``."""
    from functools import cache

    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.common.dagbag import create_dag_bag, get_latest_version_of_dag
    from airflow.api_fastapi.common.db.common import SessionDep
    from airflow.api_fastapi.core_api.datamodels.dag_run import TriggerDAGRunPostBody
    from airflow.api_fastapi.core_api.security import (
        GetUserDep,
        bearer_scheme,
        get_user,
        requires_access_dag,
    )
    from airflow.exceptions import ParamValidationError
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType
    from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response, status
    from fastapi.exception_handlers import http_exception_handler
    from fastapi.responses import HTMLResponse, RedirectResponse
    from fastapi.security import HTTPAuthorizationCredentials
    from sqlalchemy import select
    from sqlalchemy.exc import IntegrityError
    from sqlalchemy.orm import Session
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from api_poller.adapters.progress import load_job_progress, load_page_statuses, load_plan
    from api_poller.operations.retention.expiry import has_status, job_expired
    from api_poller.settings import load_settings

    app = FastAPI(
        title="API poller jobs",
        description="Start api_poller jobs and follow their progress (Airflow plugin).",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served below, behind authentication
    )

    @cache
    def dag_bag():
        # The api-server keeps its DagBag on the root app's state, which a mounted app cannot see;
        # this is the same cached, database-backed bag.
        return create_dag_bag()

    def job_runs() -> Any:
        return select(DagRun).where(DagRun.dag_id == DAG_ID)

    def get_run(job_id: str, session: Session) -> DagRun:
        run = session.scalar(job_runs().where(DagRun.run_id == job_id))
        if run is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                f"Job {job_id!r} not found: the {DAG_ID} DAG has no run with that id",
            )
        return run

    def expired(run: DagRun, total_pages: int, session: Session) -> str | None:
        """Why a finished job has no status left (purged by the retention), else None."""
        if total_pages or run.end_date is None:
            return None  # planned, so its status is there; or still running
        return job_expired(
            run.run_id,
            run.end_date,
            has_status(run.run_id, session),
            retention_days=load_settings().retention_days,
        )

    def progress_of(run: DagRun, session: Session, *, gone_if_expired: bool = False) -> JobProgress:
        state = run.state
        progress = load_job_progress(DAG_ID, run.run_id, session)
        why_expired = expired(run, progress["Total"], session)
        if why_expired and gone_if_expired:
            raise HTTPException(status.HTTP_410_GONE, why_expired)
        return JobProgress(
            **progress,
            JobId=run.run_id,
            State=str(state) if state is not None else None,
            Conf=run.conf or {},
            TriggeredBy=run.triggering_user_name,
            QueuedAt=run.queued_at,
            StartDate=run.start_date,
            EndDate=run.end_date,
            RunPath=run_path(run.run_id),
            Expired=why_expired,
        )

    def start_job(conf: dict[str, Any], user: BaseUser, session: Session, note: str | None = None) -> DagRun:
        """A manual run of the DAG, created as ``POST /api/v2/dags/{dag_id}/dagRuns`` does."""
        dag_model = session.scalar(select(DagModel).where(~DagModel.is_stale, DagModel.dag_id == DAG_ID))
        if dag_model is None:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                f"The {DAG_ID} DAG is not loaded (not parsed yet, or removed); try again shortly",
            )
        if dag_model.has_import_errors:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, f"The {DAG_ID} DAG has import errors; see the Airflow UI"
            )
        if dag_model.allowed_run_types is not None and DagRunType.MANUAL not in dag_model.allowed_run_types:
            raise HTTPException(status.HTTP_409_CONFLICT, f"The {DAG_ID} DAG does not allow manual runs")
        dag = get_latest_version_of_dag(dag_bag(), DAG_ID, session)
        try:
            params = TriggerDAGRunPostBody(logical_date=None, conf=conf).validate_context(dag)
            run = dag.create_dagrun(
                run_id=params["run_id"],
                logical_date=params["logical_date"],
                data_interval=params["data_interval"],
                run_after=params["run_after"],
                conf=params["conf"],
                run_type=DagRunType.MANUAL,
                triggered_by=DagRunTriggeredByType.REST_API,
                triggering_user_name=user.get_name(),
                state=DagRunState.QUEUED,
                partition_key=params["partition_key"],
                partition_date=params["partition_date"],
                session=session,
            )
            if note:
                run.note = (note, user.get_id())
            session.flush()
        except ParamValidationError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
        except IntegrityError as exc:
            session.rollback()
            raise HTTPException(
                status.HTTP_409_CONFLICT, "A run with the same id was just created; retry"
            ) from exc
        return run

    def started(run: DagRun, response: Response, request: Request, replay_of: str | None = None):
        response.headers["Location"] = (
            f"{request.scope.get('root_path', '')}/jobs/{quote(run.run_id, safe='')}"
        )
        return JobStarted(
            jobId=run.run_id,
            Entries=[JobEntry(EventId=run.run_id)],
            State=str(run.state),
            ReplayOf=replay_of,
        )

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

    can_read_runs = Depends(requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=DAG_ID))
    can_read_tasks = Depends(requires_access_dag("GET", DagAccessEntity.TASK_INSTANCE, param_dag_id=DAG_ID))
    can_start_runs = Depends(requires_access_dag("POST", DagAccessEntity.RUN, param_dag_id=DAG_ID))

    @app.exception_handler(StarletteHTTPException)
    async def _http_errors(request: Request, exc: StarletteHTTPException):
        # Airflow answers 403 "Invalid JWT token" for a token it cannot decode; to a client that
        # is "not authenticated" (RFC 6750 invalid_token), so answer 401 like a missing token.
        code, headers = exc.status_code, dict(exc.headers or {})
        if code == status.HTTP_403_FORBIDDEN and exc.detail == "Invalid JWT token":
            code = status.HTTP_401_UNAUTHORIZED
        if code == status.HTTP_401_UNAUTHORIZED:
            headers.setdefault("WWW-Authenticate", "Bearer")
        return await http_exception_handler(request, HTTPException(code, exc.detail, headers or None))

    @app.post(
        "/jobs",
        status_code=status.HTTP_201_CREATED,
        response_model=JobStarted,
        response_model_exclude_none=True,
        dependencies=[Depends(cookie_post_guard), can_start_runs],
        summary="Start a job (a run of the api_poller DAG)",
    )
    def create_job(
        body: JobRequest, user: GetUserDep, session: SessionDep, request: Request, response: Response
    ):
        return started(start_job(body.conf(), user, session), response, request)

    @app.get(
        "/jobs", response_model=JobList, dependencies=[can_read_runs], summary="Recent jobs, newest first"
    )
    def list_jobs(
        session: SessionDep,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = DEFAULT_LIST_LIMIT,
    ):
        runs = session.scalars(
            job_runs().order_by(DagRun.run_after.desc(), DagRun.id.desc()).limit(limit)
        ).all()
        return JobList(Jobs=[progress_of(run, session) for run in runs])

    @app.get(
        "/jobs/{job_id}", response_model=JobProgress, dependencies=[can_read_runs], summary="A job's progress"
    )
    def get_job(job_id: str, session: SessionDep):
        return progress_of(get_run(job_id, session), session, gone_if_expired=True)

    @app.get(
        "/jobs/{job_id}/tasks",
        response_model=JobPages,
        dependencies=[can_read_runs, can_read_tasks],
        summary="Every page of a job: state, attempts, locations, errors",
    )
    def get_job_pages(job_id: str, session: SessionDep):
        run = get_run(job_id, session)
        planned = planned_pages(load_plan(DAG_ID, job_id, session))
        if why_expired := expired(run, len(planned), session):
            raise HTTPException(status.HTTP_410_GONE, why_expired)
        settings = load_settings()
        pages = page_details(
            job_id,
            planned,
            load_page_statuses(DAG_ID, job_id, session),
            settings.raw_bucket,
            settings.processed_bucket,
        )
        return JobPages(
            JobId=job_id, State=str(run.state) if run.state else None, Total=len(planned), Pages=pages
        )

    @app.post(
        "/jobs/{job_id}/replay",
        status_code=status.HTTP_201_CREATED,
        response_model=JobStarted,
        response_model_exclude_none=True,
        dependencies=[Depends(cookie_post_guard), can_read_runs, can_start_runs],
        summary="Start a new job with the conf of an earlier one",
    )
    def replay_job(job_id: str, user: GetUserDep, session: SessionDep, request: Request, response: Response):
        conf = dict(get_run(job_id, session).conf or {})
        run = start_job(conf, user, session, note=f"Replay of job {job_id}")
        return started(run, response, request, replay_of=job_id)

    @app.get("/openapi.json", include_in_schema=False, dependencies=[can_read_runs])
    def openapi_document():
        return app.openapi()

    async def optional_user(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
    ) -> BaseUser | None:
        try:
            return await get_user(request, None, credentials)
        except HTTPException:
            return None

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def progress_page(request: Request, user: Annotated[BaseUser | None, Depends(optional_user)]):
        if user is None:
            # Not logged in (or the session expired): go through Airflow's login and come back.
            return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)))
        api_base = request.scope.get("root_path", "").rstrip("/")
        airflow_base = api_base.removesuffix(URL_PREFIX)
        return HTMLResponse(render_page(api_base, airflow_base), headers={"Cache-Control": "no-store"})

    return app
