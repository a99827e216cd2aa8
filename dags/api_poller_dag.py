"""api_poller: keep a full copy of a partner's paginated HTTP API in S3.

plan -> fetch (mapped over page batches; each saved page is enqueued at once)
     -> process (an SQS consumer running alongside the fetch) -> report (reconcile + summary)
     -> end_of_job (the job's outcome and metrics).
The logic lives in the ``api_poller`` package (``include/``); this file only wires it up.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import TaskGroup, dag, get_current_context, task

from api_poller import names
from api_poller.adapters.job_end import end_of_job
from api_poller.adapters.task_support import (
    aws_clients,
    consume_page_messages,
    fail_plan,
    failing_the_run_when_incomplete,
    prepare_resources,
    s3_client,
    status_recorder,
)
from api_poller.core.job_request import dag_params
from api_poller.settings import load_settings

settings = load_settings()

DOC = f"""
### API poller
Fully synchronizes a partner API that serves records page by page (`GET <url>?startAt=N&count=M`).
Each page is saved raw to `s3://{settings.raw_bucket}/jobs/<job>/raw/`,
announced on SQS queue `{settings.queue_name}`, and
processed into newline-delimited JSON under `s3://{settings.processed_bucket}/jobs/<job>/records/`.
The job id is the DAG run id. Pages move Started -> PayloadSaved -> Enqueued ->
SuccessfullyCompleted, or FailedToComplete (see the `page_status` XComs and the `report` task).
"""


@dag(
    dag_id=names.POLLER_DAG_ID,
    schedule=settings.schedule or None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=4,
    doc_md=DOC,
    tags=["api-poller"],
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
    params=dag_params(settings),
)
def api_poller() -> None:
    @task(task_id=names.PLAN_TASK)
    def plan() -> list[dict[str, Any]]:
        """Read the API's metadata, validate it and plan the pages: one entry per fetch task, its
        batch a page range (``core.planning.SeedBatch``)."""
        from api_poller.core.errors import PollerError
        from api_poller.pipeline.plan import plan_job

        context = get_current_context()
        try:
            job = plan_job(context["run_id"], context["params"], settings)
        except PollerError as exc:
            fail_plan(f"cannot plan the job: {exc}")
        batches = job.pop("batches")
        shares = job.pop("concurrency_shares")
        context["ti"].xcom_push(key=names.JOB_KEY, value=job)
        context["ti"].xcom_push(key=names.TOTAL_PAGES_KEY, value=job["total_pages"])
        return [
            {"batch": batch, "url": job["url"], "concurrency_per_task": share}
            for batch, share in zip(batches, shares, strict=True)
        ]

    @task(task_id=names.FETCH_TASK, map_index_template="{{ page_range }}", pool=settings.fetch_pool or None)
    def fetch_pages(
        batch: dict[str, int] | list[dict[str, int]], url: str, concurrency_per_task: int, queue_url: str
    ) -> dict[str, Any]:
        """Fetch this batch of pages concurrently into the raw bucket; enqueue each page saved."""
        from api_poller.adapters.lineage import report_fetch_lineage
        from api_poller.core.planning import seed_batch_pages
        from api_poller.pipeline.fetch import fetch_batch

        context = get_current_context()
        # A page range (or an older plan's page list), expanded as the pages are fetched.
        pages = seed_batch_pages(batch)
        # map_index_template renders from the context, extra keys included (Airflow's documented way
        # to name a mapped task); the Context TypedDict lists only Airflow's own keys.
        context["page_range"] = f"{pages[0].page_id} .. {pages[-1].page_id}"  # type: ignore[typeddict-unknown-key]
        report_fetch_lineage(
            url, conn_id=settings.partner_api_conn_id or None, raw_bucket=settings.raw_bucket,
            job_id=context["run_id"], aws_conn_id=settings.aws_conn_id,
        )  # fmt: skip
        s3, sqs = aws_clients(settings)
        return fetch_batch(
            settings, job_id=context["run_id"], url=url, pages=pages, concurrency=concurrency_per_task,
            s3_client=s3, sqs_client=sqs, queue_url=queue_url, recorder=status_recorder(settings, s3),
        )  # fmt: skip

    @task(task_id=names.REPORT_TASK, trigger_rule="all_done")
    def report() -> dict[str, Any]:
        """Reconcile the output with the plan and summarize the job from every task's page
        statuses; fail the run if records are missing."""
        from api_poller.pipeline.report import report_job

        s3 = s3_client(settings)
        with failing_the_run_when_incomplete():
            return report_job(settings, get_current_context()["ti"], s3)

    # Independent, so they run side by side.
    resources = prepare_resources(settings)
    job = plan()
    # A task call returns a PlainXComArg, which is indexable; the decorator is typed to return XComArg.
    queue_url = resources["queue_url"]  # type: ignore[index]
    fetched = fetch_pages.partial(queue_url=queue_url).expand_kwargs(job)

    with TaskGroup(names.PROCESS_GROUP, tooltip="Consume the job's SQS messages and process each page"):
        consumed = consume_page_messages(settings)

    reported = report()
    [resources, job] >> consumed
    fetched >> consumed >> reported
    fetched >> reported
    # The run's last step: the job's outcome and its metrics (no alerts: those are a source's).
    reported >> end_of_job(settings, names.POLLER_DAG_ID)


api_poller()
