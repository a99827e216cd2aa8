"""Repairing a finished job in its own run: redrive its dead letters, rerun its failed pages.

Both move the job's dead letters back to the processing queue (``operations.redrive``) and clear
task instances of the job's run with the DAG's own ``clear`` (the run is queued again, the job id
stays): a redrive clears the consumer and what follows it; a rerun of the failed pages also clears
the ``fetch_pages`` map indexes whose pages failed to fetch (see ``rerun``). Neither runs while the
job is queued or running.
"""

from __future__ import annotations

from collections.abc import Sequence

from airflow.api_fastapi.common.db.common import SessionDep
from airflow.models.dagbag import DBDagBag
from airflow.models.dagrun import DagRun
from airflow.serialization.definitions.dag import SerializedDAG
from airflow.utils.state import DagRunState
from botocore.exceptions import BotoCoreError, ClientError
from fastapi import APIRouter, HTTPException, status
from sqlalchemy.orm import Session

from api_poller import names
from api_poller.adapters.progress import (
    load_page_statuses,
    load_plan,
    load_plan_error,
    load_published_statuses,
)
from api_poller.aws.clients import SqsClient
from api_poller.aws.resources import queue_url
from api_poller.jobs_api.dependencies import (
    CLEAR_TASKS,
    START_RUNS,
    DagAccessDep,
    DagBagDep,
    JobRun,
    SettingsDep,
    SqsDep,
    json_post_only,
)
from api_poller.jobs_api.models import JobRedriven, JobRerun
from api_poller.jobs_api.page import ACTIVE_RUN_STATES
from api_poller.jobs_api.page_details import planned_pages
from api_poller.jobs_api.rerun import failed_pages, fetch_records_of, fetch_rerun, load_failed_fetch_tasks
from api_poller.operations.redrive import RedriveResult, redrive_dead_letters
from api_poller.settings import PollerSettings

router = APIRouter()


def finished_run(run: DagRun, what: str) -> None:
    """409 while the job is queued or running: its tasks are still at work."""
    if run.state in ACTIVE_RUN_STATES:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"Job {run.run_id!r} is still {run.state}: {what} once it has finished"
        )


def job_dag(run: DagRun, session: Session, dag_bag: DBDagBag) -> SerializedDAG:
    """The DAG version the run uses; 503 if it is not loaded (nothing is touched then)."""
    dag = dag_bag.get_dag_for_run(run, session=session)
    if dag is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"The {run.dag_id} DAG of this run is not loaded"
        )
    return dag


def downstream_of(dag: SerializedDAG, task_id: str) -> list[str]:
    """The task ids downstream of ``task_id`` (itself excluded)."""
    subset = dag.partial_subset(task_ids=[task_id], include_downstream=True, include_upstream=False)
    return [other for other in subset.task_dict if other != task_id]


def move_dead_letters(sqs: SqsClient, settings: PollerSettings, job_id: str) -> RedriveResult:
    """The job's dead letters back to the processing queue; 503 if SQS cannot be used."""
    try:
        return redrive_dead_letters(
            sqs,
            queue_url(sqs, settings.dead_letter_queue_name),
            queue_url(sqs, settings.queue_name),
            job_id,
        )
    except (RuntimeError, BotoCoreError, ClientError) as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"SQS is not usable: {exc}") from exc


def clear_in_run(
    dag: SerializedDAG, run: DagRun, task_ids: Sequence[str | tuple[str, int]], session: Session
) -> int:
    """Airflow's own clear of those task instances in the job's run; the run is queued again."""
    return dag.clear(task_ids=task_ids, run_id=run.run_id, dag_run_state=DagRunState.QUEUED, session=session)


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
    access.require(*START_RUNS, run.dag_id)
    finished_run(run, "redrive its dead letters")
    # The DAG first: nothing is moved unless the consumer can be cleared afterwards.
    dag = job_dag(run, session, dag_bag)
    processing = [names.CONSUME_TASK_ID, *downstream_of(dag, names.CONSUME_TASK_ID)]
    result = move_dead_letters(sqs, settings, run.run_id)
    # Nothing moved, nothing to process again: the run is left as it is.
    cleared = clear_in_run(dag, run, processing, session) if result.moved else 0
    return JobRedriven(JobId=run.run_id, Moved=result.moved, Failed=result.failed, ClearedTasks=cleared)


@router.post(
    "/jobs/{job_id}/rerun-failed",
    response_model=JobRerun,
    dependencies=[json_post_only],
    summary="Run a finished job's failed pages again, in the same job",
)
def rerun_failed_pages(
    run: JobRun,
    session: SessionDep,
    settings: SettingsDep,
    sqs: SqsDep,
    dag_bag: DagBagDep,
    access: DagAccessDep,
) -> JobRerun:
    """Clears the fetch tasks whose pages failed to fetch (or that failed as a whole), moves the
    job's dead letters back, and clears the consumer and what follows it: the failed pages are
    fetched or processed again, and the job's progress and report are recomputed."""
    access.require(*CLEAR_TASKS, run.dag_id)
    finished_run(run, "rerun its failed pages")
    published = load_published_statuses(run.dag_id, run.run_id, session)  # read once, used twice
    statuses = load_page_statuses(run.dag_id, run.run_id, session, published=published)
    failed = failed_pages(statuses)
    failed_fetch_tasks = load_failed_fetch_tasks(run.dag_id, run.run_id, session)
    if not failed and not failed_fetch_tasks:
        if plan_error := load_plan_error(run.dag_id, run.run_id, session):
            why = f"its plan failed ({plan_error}): replay the job once the cause is fixed"
        else:
            why = "no page of it failed"
        raise HTTPException(status.HTTP_409_CONFLICT, f"Job {run.run_id!r} has nothing to rerun: {why}")
    dag = job_dag(run, session, dag_bag)  # before anything moves
    fetch_downstream = downstream_of(dag, names.FETCH_TASK)
    moved = move_dead_letters(sqs, settings, run.run_id)
    rerun = fetch_rerun(
        failed,
        redriven=set(moved.moved),
        failed_fetch_tasks=failed_fetch_tasks,
        fetch_records=fetch_records_of(published),
        planned=planned_pages(load_plan(run.dag_id, run.run_id, session)),
        statuses=statuses,
    )
    fetch_tasks = [(names.FETCH_TASK, index) for index in rerun.map_indexes]
    cleared = clear_in_run(dag, run, [*fetch_tasks, *fetch_downstream], session)
    return JobRerun(
        JobId=run.run_id,
        Pages=sorted({*rerun.pages, *moved.moved}),
        FetchTasks=rerun.map_indexes,
        Moved=moved.moved,
        Failed=moved.failed,
        ClearedTasks=cleared,
    )
