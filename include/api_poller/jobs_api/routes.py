"""The job API's routes: start, list, read, replay and redrive jobs, and the progress page.

A job is a run of a poller DAG: the free-URL ``api_poller`` DAG, or a source's
``api_poller__<name>``. Runs are created by Airflow's own trigger function
(``airflow.api.common.trigger_dag``: the run id, the conf validated against the DAG's Params,
the triggering user, state queued) and redriven tasks are cleared by the DAG's own ``clear``.
Every route checks the user's access to the job's own DAG.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

from airflow.api.common.trigger_dag import trigger_dag
from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep
from airflow.exceptions import DagNotFound, DagRunAlreadyExists, ParamValidationError
from airflow.models.dag import DagModel
from airflow.models.dagbag import DBDagBag
from airflow.models.dagrun import DagRun
from airflow.serialization.definitions.dag import SerializedDAG
from airflow.utils.state import DagRunState
from airflow.utils.types import DagRunTriggeredByType
from botocore.exceptions import BotoCoreError, ClientError
from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api_poller import names
from api_poller.adapters.progress import load_job_progress, load_page_statuses, load_plan, load_plan_error
from api_poller.adapters.source_params import NESTED_PARAMS, SETTING_NAMES
from api_poller.aws.resources import queue_url
from api_poller.core.errors import InvalidJobRequest
from api_poller.core.job_request import URL
from api_poller.core.lifecycle import PROGRESS_FIELDS
from api_poller.jobs_api.dependencies import (
    DAG_ID,
    DagAccess,
    DagAccessDep,
    DagBagDep,
    JobRun,
    SettingsDep,
    SqsDep,
    job_runs,
    json_post_only,
    optional_user,
)
from api_poller.jobs_api.explain import failed_reasons, timeline
from api_poller.jobs_api.models import (
    PENDING,
    SOURCE_FIELD,
    JobDetail,
    JobEntry,
    JobList,
    JobPages,
    JobProgress,
    JobRedriven,
    JobRequestBase,
    JobRequestBody,
    JobStarted,
    JobTimeline,
    SourceJobRequestBody,
)
from api_poller.jobs_api.page import (
    ACTIVE_RUN_STATES,
    DEFAULT_LIST_LIMIT,
    URL_PREFIX,
    render_page,
    run_path,
)
from api_poller.jobs_api.page_details import page_details, planned_pages
from api_poller.operations.redrive import redrive_dead_letters
from api_poller.operations.retention.expiry import has_status, job_expired
from api_poller.partner.connection import check_job_url
from api_poller.settings import PollerSettings

MAX_LIST_LIMIT = 100
DEFAULT_PAGE_LIMIT = 100  # pages per /tasks answer without ?limit=
MAX_PAGE_LIMIT = 1000
PAGE_STATES = (*PROGRESS_FIELDS, PENDING)  # what /tasks?state= filters by

router = APIRouter()


# -- reading ----------------------------------------------------------------------------------------


def expired(run: DagRun, total_pages: int, session: Session, settings: PollerSettings) -> str | None:
    """Why a finished job has no status left (purged by the retention), else None."""
    if total_pages or run.end_date is None:
        return None  # planned, so its status is there; or still running
    return job_expired(
        run.run_id, run.end_date, has_status(run.run_id, session), retention_days=settings.retention_days
    )


def progress_of(
    run: DagRun,
    session: Session,
    settings: PollerSettings,
    statuses: Mapping[str, Mapping[str, Any]] | None = None,
) -> JobProgress:
    progress = load_job_progress(run.dag_id, run.run_id, session, statuses)
    return JobProgress.model_validate(
        {
            **progress,
            "JobId": run.run_id,
            "DagId": run.dag_id,
            "Source": names.source_of_dag(run.dag_id),
            "State": str(run.state) if run.state is not None else None,
            "Conf": run.conf or {},
            "TriggeredBy": run.triggering_user_name,
            "QueuedAt": run.queued_at,
            "StartDate": run.start_date,
            "EndDate": run.end_date,
            "RunPath": run_path(run.dag_id, run.run_id),
            "Expired": expired(run, int(progress["Total"]), session, settings),
        }
    )


@router.get("/jobs", response_model=JobList, summary="Recent jobs of every poller DAG, newest first")
def list_jobs(
    session: SessionDep,
    settings: SettingsDep,
    access: DagAccessDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = DEFAULT_LIST_LIMIT,
) -> JobList:
    """Jobs of the poller DAGs (``api_poller`` and every ``api_poller__<source>``) whose runs the
    user may read; the others are left out, as Airflow's own run list does."""
    readable = access.readable_dag_ids()
    query = job_runs().where(DagRun.dag_id.in_(readable))
    runs = session.scalars(query.order_by(DagRun.run_after.desc(), DagRun.id.desc()).limit(limit)).all()
    return JobList(Jobs=[progress_of(run, session, settings) for run in runs])


@router.get("/jobs/{job_id}", response_model=JobDetail, summary="A job's progress, and why it failed")
def get_job(run: JobRun, session: SessionDep, settings: SettingsDep) -> JobDetail:
    statuses = load_page_statuses(run.dag_id, run.run_id, session)  # read once, for both parts
    progress = progress_of(run, session, settings, statuses)
    if progress.Expired:
        raise HTTPException(status.HTTP_410_GONE, progress.Expired)
    return JobDetail.model_validate(
        {
            **progress.model_dump(),
            "Error": load_plan_error(run.dag_id, run.run_id, session),
            "FailedReasons": failed_reasons(statuses),
        }
    )


def page_state(
    state: Annotated[
        str | None, Query(max_length=64, description=f"Only the pages in this state: one of {PAGE_STATES}.")
    ] = None,
) -> str | None:
    """The ``?state=`` filter; 422 listing the valid states for any other value."""
    if state is not None and state not in PAGE_STATES:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"Unknown page state {state!r}: use one of {', '.join(PAGE_STATES)}",
        )
    return state


def readable_pages(
    run: DagRun, session: Session, settings: PollerSettings, access: DagAccess
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The job's planned pages and their statuses; 410 once the retention purged them."""
    access.require("GET", DagAccessEntity.TASK_INSTANCE, run.dag_id)
    planned = planned_pages(load_plan(run.dag_id, run.run_id, session))
    if why_expired := expired(run, len(planned), session, settings):
        raise HTTPException(status.HTTP_410_GONE, why_expired)
    return planned, load_page_statuses(run.dag_id, run.run_id, session)


@router.get(
    "/jobs/{job_id}/tasks",
    response_model=JobPages,
    summary="A job's pages, a slice at a time, optionally of one state: attempts, locations, errors",
)
def get_job_pages(
    run: JobRun,
    session: SessionDep,
    settings: SettingsDep,
    access: DagAccessDep,
    state: Annotated[str | None, Depends(page_state)],
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_LIMIT)] = DEFAULT_PAGE_LIMIT,
) -> JobPages:
    planned, statuses = readable_pages(run, session, settings, access)
    pages = page_details(run.run_id, planned, statuses, settings.raw_bucket, settings.processed_bucket)
    matching = pages if state is None else [page for page in pages if page.State == state]
    return JobPages(
        JobId=run.run_id,
        State=str(run.state) if run.state else None,
        Total=len(pages),
        Matching=len(matching),
        Offset=offset,
        Limit=limit,
        Pages=matching[offset : offset + limit],
    )


@router.get(
    "/jobs/{job_id}/timeline",
    response_model=JobTimeline,
    summary="Pages completed, failed and retried per time bucket (about 60 over the job)",
)
def get_job_timeline(
    run: JobRun, session: SessionDep, settings: SettingsDep, access: DagAccessDep
) -> JobTimeline:
    _, statuses = readable_pages(run, session, settings, access)
    end = run.end_date or (datetime.now(UTC) if run.start_date else None)
    return JobTimeline.model_validate(
        {
            "JobId": run.run_id,
            "State": str(run.state) if run.state else None,
            **timeline(statuses, run.start_date, end),
        }
    )


# -- starting ---------------------------------------------------------------------------------------


def loaded_dag(dag_id: str, session: Session) -> DagModel:
    """The DAG's model; 503 while it is not (or no longer) loaded, or has import errors."""
    dag_model = session.scalar(select(DagModel).where(~DagModel.is_stale, DagModel.dag_id == dag_id))
    if dag_model is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"The {dag_id} DAG is not loaded (not parsed yet, or removed); try again shortly",
        )
    if dag_model.has_import_errors:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"The {dag_id} DAG has import errors; see the Airflow UI"
        )
    return dag_model


def start_job(
    dag_id: str, conf: dict[str, Any], user: BaseUser, session: Session, note: str | None = None
) -> DagRun:
    """A manual run of the DAG, made by Airflow's own trigger function."""
    loaded_dag(dag_id, session)
    try:
        run = trigger_dag(
            dag_id,
            triggered_by=DagRunTriggeredByType.REST_API,
            triggering_user_name=user.get_name(),
            conf=conf,
            session=session,
        )
    except ParamValidationError as exc:  # the conf against the DAG's Params
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    except DagNotFound as exc:  # the DAG model is there, its serialized form not yet
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"The {dag_id} DAG is not serialized yet; try again shortly"
        ) from exc
    except (DagRunAlreadyExists, IntegrityError) as exc:
        session.rollback()
        raise HTTPException(
            status.HTTP_409_CONFLICT, "A run with the same id was just created; retry"
        ) from exc
    except ValueError as exc:  # e.g. the DAG does not allow manual runs
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    if run is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"The {dag_id} DAG created no run")
    if note:
        run.note = (note, user.get_id())  # the note's author, as the REST API records it
        session.flush()
    return run


def started(run: DagRun, response: Response, request: Request, replay_of: str | None = None) -> JobStarted:
    response.headers["Location"] = f"{request.scope.get('root_path', '')}/jobs/{quote(run.run_id, safe='')}"
    return JobStarted(
        jobId=run.run_id, Entries=[JobEntry(EventId=run.run_id)], State=str(run.state), ReplayOf=replay_of
    )


def url_refused(url: str, reason: InvalidJobRequest) -> RequestValidationError:
    """A 422 shaped like the body's own validation errors."""
    return RequestValidationError(
        [{"type": "value_error", "loc": ("body", URL.name), "msg": f"Value error, {reason}", "input": url}]
    )


def parsed(model: type[JobRequestBase], body: Mapping[str, Any]) -> JobRequestBase:
    """The body as ``model``, or the 422 FastAPI would answer for it (``loc`` under ``body``)."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None


def source_dag_for(source: str, session: Session) -> str:
    """The source's DAG id; 404 naming the source when no such DAG is known."""
    dag_id = names.source_dag_id(source)
    if session.scalar(select(DagModel.dag_id).where(~DagModel.is_stale, DagModel.dag_id == dag_id)) is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"Source {source!r} not found: no DAG {dag_id} is loaded (is its file, with name: {source}, "
            "in the sources folder? A broken file shows up as an import error in the Airflow UI)",
        )
    return dag_id


def check_source_params(
    source: str, dag_id: str, conf: Mapping[str, Any], session: Session, dag_bag: DBDagBag
) -> None:
    """422 for a query parameter the source does not let a trigger set (its DAG's Params say which)."""
    asked = conf.get(NESTED_PARAMS) or {}
    if not asked:
        return
    dag = dag_bag.get_latest_version_of_dag(dag_id, session=session)
    if dag is None:
        return  # not serialized yet: trigger_dag answers 503, and the plan step checks again
    allowed = sorted(set(dag.params) - set(SETTING_NAMES))
    refused = sorted(name for name in asked if name not in allowed)
    if refused:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("body", NESTED_PARAMS, name),
                    "msg": f"Value error, source {source!r} does not let a trigger set {name!r} "
                    f"(its overridable_params: {', '.join(allowed) or 'none'})",
                    "input": asked[name],
                }
                for name in refused
            ]
        )


@router.post(
    "/jobs",
    status_code=status.HTTP_201_CREATED,
    response_model=JobStarted,
    response_model_exclude_none=True,
    dependencies=[json_post_only],
    summary="Start a job: a run of the api_poller DAG ({url}) or of a source's DAG ({source})",
)
def create_job(
    body: Annotated[
        dict[str, Any],
        Body(
            description="Either the free-URL job {url, page_size, concurrency, fetch_tasks} (the api_poller "
            "DAG), or a source's job {source, params, full_refresh, concurrency, fetch_tasks} (the DAG "
            "api_poller__<source>).",
            openapi_examples={
                "url": {"value": {"url": "https://partner.example/payload", "fetch_tasks": 4}},
                "source": {"value": {"source": "acme_orders", "params": {"status": "open"}}},
            },
        ),
    ],
    user: GetUserDep,
    access: DagAccessDep,
    session: SessionDep,
    settings: SettingsDep,
    dag_bag: DagBagDep,
    request: Request,
    response: Response,
) -> JobStarted:
    if SOURCE_FIELD in body:
        source_request = parsed(SourceJobRequestBody, body)
        source = str(body[SOURCE_FIELD])
        dag_id = names.source_dag_id(source)
        access.require("POST", DagAccessEntity.RUN, dag_id)
        source_dag_for(source, session)
        conf = source_request.conf()
        check_source_params(source, dag_id, conf, session, dag_bag)
        return started(start_job(dag_id, conf, user, session), response, request)
    access.require("POST", DagAccessEntity.RUN, DAG_ID)
    conf = parsed(JobRequestBody, body).conf()
    try:
        # The SSRF guard now, so a refused URL is a 422 and not a failed run; the plan step checks
        # again (what a host resolves to can change).
        check_job_url(conf[URL.name], settings)
    except InvalidJobRequest as exc:
        raise url_refused(conf[URL.name], exc) from None
    return started(start_job(DAG_ID, conf, user, session), response, request)


@router.post(
    "/jobs/{job_id}/replay",
    status_code=status.HTTP_201_CREATED,
    response_model=JobStarted,
    response_model_exclude_none=True,
    dependencies=[json_post_only],
    summary="Start a new job with the conf of an earlier one",
)
def replay_job(
    run: JobRun,
    user: GetUserDep,
    access: DagAccessDep,
    session: SessionDep,
    settings: SettingsDep,
    request: Request,
    response: Response,
) -> JobStarted:
    access.require("POST", DagAccessEntity.RUN, run.dag_id)
    conf = dict(run.conf or {})
    # The free-URL DAG: its URL is checked again now (without one, its default URL applies and the
    # plan step checks it). A source's conf is checked by its DAG's Params and its plan step.
    if run.dag_id == DAG_ID and conf.get(URL.name):
        try:
            check_job_url(URL.check(conf[URL.name]), settings)
        except InvalidJobRequest as exc:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"Job {run.run_id!r} cannot be replayed: {exc}"
            ) from None
    replay = start_job(run.dag_id, conf, user, session, note=f"Replay of job {run.run_id}")
    return started(replay, response, request, replay_of=run.run_id)


# -- redriving --------------------------------------------------------------------------------------


def processing_tasks(run: DagRun, session: Session, dag_bag: DBDagBag) -> tuple[SerializedDAG, list[str]]:
    """The run's DAG and the task ids a redrive clears: the consumer and what follows it."""
    dag = dag_bag.get_dag_for_run(run, session=session)
    if dag is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"The {run.dag_id} DAG of this run is not loaded"
        )
    subset = dag.partial_subset(
        task_ids=[names.CONSUME_TASK_ID], include_downstream=True, include_upstream=False
    )
    return dag, list(subset.task_dict)


@router.post(
    "/jobs/{job_id}/redrive",
    response_model=JobRedriven,
    dependencies=[json_post_only],
    summary="Send a finished job's dead letters back to processing and rerun its consumer",
)
def redrive_job(
    run: JobRun,
    session: SessionDep,
    settings: SettingsDep,
    sqs: SqsDep,
    dag_bag: DagBagDep,
    access: DagAccessDep,
) -> JobRedriven:
    access.require("POST", DagAccessEntity.RUN, run.dag_id)
    if run.state in ACTIVE_RUN_STATES:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"Job {run.run_id!r} is still {run.state}: redrive its dead letters once it has finished",
        )
    # The DAG first: nothing is moved unless the consumer can be cleared afterwards.
    dag, task_ids = processing_tasks(run, session, dag_bag)
    try:
        result = redrive_dead_letters(
            sqs,
            queue_url(sqs, settings.dead_letter_queue_name),
            queue_url(sqs, settings.queue_name),
            run.run_id,
        )
    except (RuntimeError, BotoCoreError, ClientError) as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"SQS is not usable: {exc}") from exc
    # Nothing moved, nothing to process again: the run is left as it is.
    cleared = 0
    if result.moved:  # Airflow's own clear; the run is queued again
        cleared = dag.clear(
            task_ids=task_ids, run_id=run.run_id, dag_run_state=DagRunState.QUEUED, session=session
        )
    return JobRedriven(JobId=run.run_id, Moved=result.moved, Failed=result.failed, ClearedTasks=cleared)


# -- the progress page ------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def progress_page(request: Request, user: Annotated[BaseUser | None, Depends(optional_user)]) -> Response:
    if user is None:
        # Not logged in (or the session expired): go through Airflow's login and come back.
        return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)))
    api_base = request.scope.get("root_path", "").rstrip("/")
    airflow_base = api_base.removesuffix(URL_PREFIX)
    return HTMLResponse(render_page(api_base, airflow_base), headers={"Cache-Control": "no-store"})
