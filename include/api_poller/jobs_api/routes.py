"""The job API's routes: start, list, read and replay jobs, and the progress page.

A job is a run of a poller DAG: the free-URL ``api_poller`` DAG, or a source's
``api_poller__<name>``. Runs are created by Airflow's own trigger function
(``airflow.api.common.trigger_dag``: the run id, the conf validated against the DAG's Params,
the triggering user, state queued); a replay asked with an ``Idempotency-Key`` gets a run id
derived from it, so a repeated request finds the first replay instead of starting another.
Repairing a job in its own run (redrive, rerun of the failed pages) is in ``repair``.
Every route checks the user's access to the job's own DAG.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
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
from airflow.utils.types import DagRunTriggeredByType
from fastapi import APIRouter, Body, Depends, Header, HTTPException, Path, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api_poller import names
from api_poller.adapters.progress import (
    JobSummaries,
    load_job_progress,
    load_job_status,
    load_job_summaries,
    load_page_records,
    load_plan,
    load_plan_error,
)
from api_poller.adapters.source_params import NESTED_PARAMS, SETTING_NAMES
from api_poller.core.errors import InvalidJobRequest
from api_poller.core.job_request import URL
from api_poller.core.lifecycle import PROGRESS_FIELDS, PageState
from api_poller.core.page_bits import page_id_of, page_number, page_numbers
from api_poller.core.planning import page_id
from api_poller.core.status_document import JobStatus
from api_poller.jobs_api.dependencies import (
    DAG_ID,
    START_RUNS,
    DagAccess,
    DagAccessDep,
    DagBagDep,
    JobRun,
    SettingsDep,
    job_actions,
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
    JobRequestBase,
    JobRequestBody,
    JobStarted,
    JobTimeline,
    PageDetail,
    SourceJobRequestBody,
)
from api_poller.jobs_api.page import (
    DEFAULT_LIST_LIMIT,
    URL_PREFIX,
    render_page,
    run_path,
)
from api_poller.jobs_api.page_details import PlannedPages, page_detail, planned_pages
from api_poller.operations.retention.expiry import has_status, job_expired
from api_poller.partner.connection import check_job_url
from api_poller.settings import PollerSettings

MAX_LIST_LIMIT = 100
PAGE_ID = re.compile(r"page-\d{6,12}")  # ``core.planning.page_id``: zero-padded page numbers
IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"  # printable ASCII, no spaces
REPLAYED_HEADER = "Idempotent-Replayed"  # set on the answer to a repeated key
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
    run: DagRun, session: Session, settings: PollerSettings, job_status: JobStatus | None = None
) -> JobProgress:
    progress = load_job_progress(run.dag_id, run.run_id, session, job_status)
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


@router.get(
    "/jobs/{job_id}",
    response_model=JobDetail,
    summary="A job's progress, why it failed, and the actions the user may take",
)
def get_job(run: JobRun, session: SessionDep, settings: SettingsDep, access: DagAccessDep) -> JobDetail:
    job_status = load_job_status(run.dag_id, run.run_id, session)  # read once, for both parts
    progress = progress_of(run, session, settings, job_status)
    if progress.Expired:
        raise HTTPException(status.HTTP_410_GONE, progress.Expired)
    return JobDetail.model_validate(
        {
            **progress.model_dump(),
            "Error": load_plan_error(run.dag_id, run.run_id, session),
            "FailedReasons": failed_reasons(job_status.failures),
            "Actions": job_actions(access, run.dag_id),
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


@dataclass(frozen=True)
class JobPageSets:
    """A job's planned pages and merged status, and the page sets /tasks filters by (bitmaps)."""

    planned: PlannedPages
    job: JobSummaries  # read once per request: the status below, and where the pages' records are
    status: JobStatus
    planned_mask: int
    every: int  # planned or recorded

    def matching(self, state: str | None) -> int:
        if state is None:
            return self.every
        if state == PENDING:
            return self.planned_mask & ~self.status.recorded
        return self.status.masks[PageState(state)]

    def state_of(self, number: int) -> str:
        state = self.status.state_of(number)
        return state.value if state is not None else PENDING


def readable_pages(run: DagRun, session: Session, settings: PollerSettings, access: DagAccess) -> JobPageSets:
    """The job's planned pages and their status; 410 once the retention purged them."""
    access.require("GET", DagAccessEntity.TASK_INSTANCE, run.dag_id)
    planned = planned_pages(load_plan(run.dag_id, run.run_id, session))
    if why_expired := expired(run, len(planned), session, settings):
        raise HTTPException(status.HTTP_410_GONE, why_expired)
    job = load_job_summaries(run.dag_id, run.run_id, session)
    job_status = job.status()
    planned_mask = planned.mask()
    return JobPageSets(planned, job, job_status, planned_mask, planned_mask | job_status.recorded)


def listed_pages(
    run: DagRun, session: Session, settings: PollerSettings, pages: JobPageSets, numbers: list[int]
) -> list[PageDetail]:
    """``numbers``' pages with their records: only the status chunks holding them are read."""
    records = load_page_records(run.dag_id, run.run_id, session, numbers, job=pages.job)
    listed = []
    for number in numbers:
        page = page_id(number)
        listed.append(
            page_detail(
                run.run_id,
                page,
                pages.planned.get(page, {}),
                records.get(page, {}),
                pages.state_of(number),
                settings.raw_bucket,
                settings.processed_bucket,
            )
        )
    return listed


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
    pages = readable_pages(run, session, settings, access)
    matching = pages.matching(state)
    numbers = list(page_numbers(matching, offset, limit))
    return JobPages(
        JobId=run.run_id,
        State=str(run.state) if run.state else None,
        Total=pages.every.bit_count(),
        Matching=matching.bit_count(),
        Offset=offset,
        Limit=limit,
        Pages=listed_pages(run, session, settings, pages, numbers),
    )


def valid_page_id(
    page_id: Annotated[str, Path(description="A page's id, as in /tasks: page-000042.")],
) -> str:
    if len(page_id) > 32 or not PAGE_ID.fullmatch(page_id):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"{page_id[:32]!r} is not a page id: page ids look like page-000042 (see /tasks)",
        )
    return page_id


@router.get("/jobs/{job_id}/tasks/{page_id}", response_model=PageDetail, summary="One page of a job")
def get_job_page(
    run: JobRun,
    session: SessionDep,
    settings: SettingsDep,
    access: DagAccessDep,
    page_id: Annotated[str, Depends(valid_page_id)],
) -> PageDetail:
    pages = readable_pages(run, session, settings, access)
    number = page_number(page_id)
    if number is None or not pages.every >> number & 1:
        every = pages.every
        first, last = (every & -every).bit_length() - 1, every.bit_length() - 1
        has = f"its pages are {page_id_of(first)} .. {page_id_of(last)}" if every else "it has no pages (yet)"
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"Page {page_id!r} not found in job {run.run_id!r}: {has}"
        )
    [page] = listed_pages(run, session, settings, pages, [number])
    return page


@router.get(
    "/jobs/{job_id}/timeline",
    response_model=JobTimeline,
    summary="Pages completed, failed and retried per time bucket (about 60 over the job)",
)
def get_job_timeline(
    run: JobRun, session: SessionDep, settings: SettingsDep, access: DagAccessDep
) -> JobTimeline:
    pages = readable_pages(run, session, settings, access)
    end = run.end_date or (datetime.now(UTC) if run.start_date else None)
    return JobTimeline.model_validate(
        {
            "JobId": run.run_id,
            "State": str(run.state) if run.state else None,
            **timeline(pages.status.timeline_buckets, run.start_date, end),
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
    dag_id: str,
    conf: dict[str, Any],
    user: BaseUser,
    session: Session,
    note: str | None = None,
    run_id: str | None = None,
) -> DagRun:
    """A manual run of the DAG, made by Airflow's own trigger function (``run_id``: Airflow's own
    otherwise)."""
    loaded_dag(dag_id, session)
    try:
        run = trigger_dag(
            dag_id,
            triggered_by=DagRunTriggeredByType.REST_API,
            triggering_user_name=user.get_name(),
            run_id=run_id,
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


def replay_run_id(run: DagRun, idempotency_key: str) -> str:
    """The run id of the replay of ``run`` asked for with ``idempotency_key``: the same key gives
    the same id, so the database's unique run id refuses a second replay (even a concurrent one)."""
    digest = hashlib.sha256("\0".join((run.dag_id, run.run_id, idempotency_key)).encode()).hexdigest()
    return f"replay__{digest[:32]}"


def find_run(dag_id: str, run_id: str, session: Session) -> DagRun | None:
    return session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))


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
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=IDEMPOTENCY_HEADER,
            pattern=IDEMPOTENCY_KEY_PATTERN,
            description="A key of the client's choosing (a UUID per confirmation, say): a repeated "
            "replay of the same job with the same key answers 200 with the replay the first one "
            "started, instead of starting another.",
        ),
    ] = None,
) -> JobStarted:
    access.require(*START_RUNS, run.dag_id)
    replay_id = replay_run_id(run, idempotency_key) if idempotency_key else None
    if replay_id and (earlier := find_run(run.dag_id, replay_id, session)):
        response.status_code = status.HTTP_200_OK
        response.headers[REPLAYED_HEADER] = "true"
        return started(earlier, response, request, replay_of=run.run_id)
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
    replay = start_job(run.dag_id, conf, user, session, note=f"Replay of job {run.run_id}", run_id=replay_id)
    return started(replay, response, request, replay_of=run.run_id)


# -- the progress page ------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def progress_page(request: Request, user: Annotated[BaseUser | None, Depends(optional_user)]) -> Response:
    if user is None:
        # Not logged in (or the session expired): go through Airflow's login and come back.
        return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)))
    api_base = request.scope.get("root_path", "").rstrip("/")
    airflow_base = api_base.removesuffix(URL_PREFIX)
    return HTMLResponse(render_page(api_base, airflow_base), headers={"Cache-Control": "no-store"})
