"""One source file, one DAG: ``build_source_dag(spec, settings)`` -> ``api_poller__<name>``.

The DAG has the seed DAG's shape (``dags/api_poller_dag.py``) and task ids (``names``):

    prepare_resources + plan -> fetch_pages (mapped) -> process.consume_page_messages -> report

* ``plan`` reads the source's Connection and (incremental sources) its watermark, checks the
  run's conf against the source, reads the first page and plans the job
  (``pipeline.source_plan``). It pushes the seed's XComs: ``job`` (the plan without its page
  batches) and ``total_pages`` (None while a walk's total is unknown), and returns one
  ``fetch_pages`` argument mapping per fetch task.
* ``fetch_pages`` fetches its planned batch, or walks the source page after page
  (``pipeline.source_fetch``); each page saved is enqueued at once.
* ``process.consume_page_messages`` is the seed's consumer sensor; for a walk it learns the
  job's pages as they are announced (``pipeline.consume``).
* ``report`` reconciles the job (``pipeline.report.report_source_job``).
* ``publish`` (after a successful report) rolls a complete job's records up into the source's
  snapshot, writes its manifest and the latest pointer, advances an incremental source's
  watermark, and emits the source's Asset event (``pipeline.publish``, docs/output.md).

Nothing here touches the network, AWS or the Connection at parse time: the DAG factory builds
every source's DAG on each parse. The Connection is read by the tasks that need it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import DAG, TaskGroup, get_current_context, task

from api_poller import names
from api_poller.adapters.job_end import end_of_job, run_last
from api_poller.adapters.source_params import source_params
from api_poller.adapters.task_support import (
    aws_clients,
    consume_page_messages,
    fail_plan,
    failing_the_run_when_incomplete,
    prepare_resources,
    s3_client,
    status_recorder,
)
from api_poller.core.errors import SourceError
from api_poller.core.keys import s3_uri, source_snapshots_prefix, watermark_key
from api_poller.settings import PollerSettings
from api_poller.sources.spec import SourceSpec

if TYPE_CHECKING:
    from api_poller.partner.auth import HttpConnection

START_DATE = datetime(2026, 1, 1)


def describe_source(spec: SourceSpec, settings: PollerSettings) -> str:
    """The DAG's doc_md: what the source reads, how it pages and authenticates, where data lands."""
    paginator = spec.paginator
    lines = [
        f"### Source `{spec.name}`",
        spec.description or "",
        "",
        f"* **File**: `{spec.file}`",
        f"* **Connection**: `{spec.connection_id}` (scheme, host, port and credentials), path `{spec.path}`",
        f"* **Records**: `{spec.records.text}`; primary key: "
        + (f"`{spec.primary_key}`" if spec.primary_key else "none (reconciliation counts records)"),
        f"* **Paginator**: `{paginator.kind}`; at most {spec.max_pages} pages",
        f"* **Auth**: `{spec.auth.type}`",
        f"* **Schedule**: `{spec.schedule}`" if spec.schedule else "* **Schedule**: manual runs only",
    ]
    if spec.overridable_params:
        lines.append(f"* **A trigger may set**: {', '.join(f'`{p}`' for p in spec.overridable_params)}")
    if spec.incremental:
        inc = spec.incremental
        lines.append(
            f"* **Incremental** on `{inc.cursor_field}`, sent in `{inc.param}`; watermark at "
            f"`{s3_uri(settings.processed_bucket, watermark_key(spec.name))}` (delete it to reset)"
        )
    lines += [
        "",
        f"Pages are saved raw to `s3://{settings.raw_bucket}/jobs/<job>/raw/`, announced on SQS "
        f"queue `{settings.queue_name}` and processed into newline-delimited JSON under "
        f"`s3://{settings.processed_bucket}/jobs/<job>/records/`. The job id is the DAG run id.",
        "",
        f"A complete job is published as `{spec.output.format}` files of about "
        f"{spec.output.target_file_size_mb} MB under `s3://{settings.processed_bucket}/"
        f"{source_snapshots_prefix(spec.name)}dt=<date>/job=<job>/` with a `_manifest.json`; "
        f"Asset `{names.source_asset_name(spec.name)}` gets an event per snapshot"
        + (f"; the newest {spec.output.keep_snapshots} are kept." if spec.output.keep_snapshots else "."),
    ]
    return "\n".join(lines)


def task_connection(spec: SourceSpec) -> HttpConnection:
    """The source's Airflow Connection in a task; a missing one fails the task at once, naming the
    file and the field (retrying cannot help)."""
    from airflow.sdk.exceptions import AirflowFailException

    from api_poller.pipeline.source_plan import source_connection

    try:
        return source_connection(spec)
    except SourceError as error:
        raise AirflowFailException(f"source {spec.name!r}: {error}") from None


def page_range(mode: str, batch: Mapping[str, Any] | list[Mapping[str, Any]]) -> str:
    """A fetch task's name in the UI (its map index): its pages, or that it walks."""
    from api_poller.core.planning import batch_page_numbers, page_id

    pages = batch_page_numbers(batch)
    if mode == "walk":
        return f"walk from {page_id(pages[0])}"
    return f"{page_id(pages[0])} .. {page_id(pages[-1])}"


def check_schedule(spec: SourceSpec) -> None:
    """SourceError naming the file and ``schedule`` if it is not a cron expression or preset."""
    from airflow.exceptions import AirflowTimetableInvalid

    bare = DAG(
        dag_id=names.source_dag_id(spec.name),
        schedule=spec.schedule,
        start_date=START_DATE,
        max_active_runs=1,  # @continuous needs it
        auto_register=False,
    )
    try:
        bare.timetable.validate()
    except AirflowTimetableInvalid as error:
        message = f"{spec.schedule!r} is not a cron expression or preset: {error}"
        raise SourceError(spec.file, "schedule", message) from None


def check_source(spec: SourceSpec, settings: PollerSettings) -> None:
    """What a source's file alone cannot tell but its DAG needs: a valid schedule, and a trigger
    form whose fields do not clash; SourceError naming the file and the field."""
    from api_poller.adapters.alerts import check_alerts
    from api_poller.adapters.source_params import source_fields

    source_fields(spec, settings)
    check_schedule(spec)
    check_alerts(spec, settings)


def build_source_dag(spec: SourceSpec, settings: PollerSettings) -> DAG:
    """The DAG of one source; SourceError (naming the file and field) for a bad schedule or an
    overridable parameter named like a trigger setting.

    The DAG is not auto-registered: the factory file exposes it as a module global, and the
    broken-sources file, which only checks sources, must not pick it up.
    """
    check_source(spec, settings)
    dag = DAG(
        dag_id=names.source_dag_id(spec.name),
        schedule=spec.schedule,
        start_date=START_DATE,
        catchup=False,
        # One job of a source at a time: its watermark is read then written without a lock.
        max_active_runs=1,
        doc_md=describe_source(spec, settings),
        description=(spec.description or f"Sync source {spec.name}")[:200],
        tags=["api-poller", names.SOURCE_DAG_TAG],
        default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
        params=source_params(spec, settings),
        auto_register=False,
    )
    with dag:
        _wire_tasks(spec, settings)
        run_last(dag, end_of_job(settings, spec.name, spec.alerts))
    return dag


def _wire_tasks(spec: SourceSpec, settings: PollerSettings) -> None:
    @task(task_id=names.PLAN_TASK)
    def plan() -> list[dict[str, Any]]:
        """Check the run's conf, read the first page and plan the pages: one entry per fetch task."""
        from api_poller.adapters.source_params import source_conf
        from api_poller.aws.watermark import read_watermark
        from api_poller.core.errors import PollerError
        from api_poller.pipeline.source_fetch import fetch_task_arguments
        from api_poller.pipeline.source_plan import plan_source_job, source_connection

        context = get_current_context()
        try:
            connection = source_connection(spec)
            watermark = None
            if spec.incremental is not None:
                s3 = s3_client(settings)
                stored = read_watermark(s3, settings.processed_bucket, spec.name)
                watermark = stored.value if stored is not None else None
            job = plan_source_job(
                spec,
                context["run_id"],
                source_conf(spec, context["params"], settings),
                settings,
                connection,
                watermark,
            )
        except PollerError as exc:
            fail_plan(f"source {spec.name!r}: cannot plan the job: {exc}")
        arguments = fetch_task_arguments(job)
        summary = {key: value for key, value in job.items() if key != "batches"}
        summary["fetch_tasks"] = len(arguments)
        context["ti"].xcom_push(key=names.JOB_KEY, value=summary)
        # None while a walk's total is unknown (see adapters.progress).
        context["ti"].xcom_push(key=names.TOTAL_PAGES_KEY, value=job["total_pages"])
        return arguments

    @task(task_id=names.FETCH_TASK, map_index_template="{{ page_range }}", pool=settings.fetch_pool or None)
    def fetch_pages(
        mode: str,
        base_request: dict[str, Any],
        batch: Mapping[str, Any] | list[Mapping[str, Any]],
        concurrency: int,
        requests_per_second: float | None,
        queue_url: str,
    ) -> dict[str, Any]:
        """Fetch this batch (or walk the source) into the raw bucket; enqueue each page saved."""
        from api_poller.adapters.lineage import report_fetch_lineage
        from api_poller.partner.auth import source_url
        from api_poller.pipeline.source_fetch import fetch_source_batch

        context = get_current_context()
        # map_index_template renders from the context (see dags/api_poller_dag.py).
        context["page_range"] = page_range(mode, batch)  # type: ignore[typeddict-unknown-key]
        connection = task_connection(spec)
        report_fetch_lineage(
            source_url(connection, spec.path), conn_id=spec.connection_id, raw_bucket=settings.raw_bucket,
            job_id=context["run_id"], aws_conn_id=settings.aws_conn_id,
        )  # fmt: skip
        s3, sqs = aws_clients(settings)
        return fetch_source_batch(
            settings, spec, job_id=context["run_id"], mode=mode, base_request=base_request, batch=batch,
            concurrency=concurrency, requests_per_second=requests_per_second, connection=connection,
            s3_client=s3, sqs_client=sqs, queue_url=queue_url, recorder=status_recorder(settings, s3),
        )  # fmt: skip

    @task(task_id=names.REPORT_TASK, trigger_rule="all_done")
    def report() -> dict[str, Any]:
        """Reconcile the output with what was fetched, summarize the job, advance the watermark
        of an incremental source if the job is complete; fail the run if it is not."""
        from api_poller.pipeline.report import report_source_job

        s3 = s3_client(settings)
        with failing_the_run_when_incomplete():
            return report_source_job(settings, spec, get_current_context()["ti"], s3)

    resources = prepare_resources(settings)
    job = plan()
    if spec.incremental is not None:
        # The plan reads the watermark from the processed bucket, which this step may create.
        resources >> job
    queue_url = resources["queue_url"]  # type: ignore[index]
    fetched = fetch_pages.partial(queue_url=queue_url).expand_kwargs(job)

    with TaskGroup(names.PROCESS_GROUP, tooltip="Consume the job's SQS messages and process each page"):
        consumed = consume_page_messages(settings)

    reported = report()
    [resources, job] >> consumed
    fetched >> consumed >> reported
    fetched >> reported
    reported >> _publish_task(spec, settings)


def _publish_task(spec: SourceSpec, settings: PollerSettings) -> Any:
    """The publish step: runs only after a successful report; skips (no Asset event) when the job
    is incomplete (API_POLLER_ON_INCOMPLETE=warn) or its snapshot is already published."""
    from api_poller.adapters.snapshot_asset import source_asset

    asset = source_asset(spec.name, settings)

    @task(task_id=names.PUBLISH_TASK, outlets=[asset])
    def publish() -> dict[str, Any]:
        """Roll the job's records up into the source's snapshot, write its manifest, then the
        latest pointer (and advance an incremental source's watermark); emit the Asset event."""
        from airflow.sdk.exceptions import AirflowSkipException

        from api_poller.adapters.lineage import report_s3_input, report_s3_output
        from api_poller.core.keys import processed_prefix, snapshot_prefix
        from api_poller.pipeline.publish import NothingToPublish, publish_source_snapshot, snapshot_date

        context = get_current_context()
        dag_run = context["dag_run"]
        job_id, dt = context["run_id"], snapshot_date(dag_run.logical_date or dag_run.run_after)
        s3 = s3_client(settings)
        try:
            outcome = publish_source_snapshot(
                settings, spec, s3, job_id=job_id, dt=dt,
                summary=context["ti"].xcom_pull(task_ids=names.REPORT_TASK, key=names.SUMMARY_KEY),
            )  # fmt: skip
        except NothingToPublish as reason:
            raise AirflowSkipException(str(reason)) from None
        # The roll-up goes through raw boto3 calls, which do not report to hook lineage themselves.
        bucket, conn_id = settings.processed_bucket, settings.aws_conn_id
        report_s3_input(bucket, processed_prefix(job_id), aws_conn_id=conn_id)
        report_s3_output(bucket, snapshot_prefix(spec.name, dt, job_id), aws_conn_id=conn_id)
        if outcome["watermark"] is not None:
            context["ti"].xcom_push(key=names.WATERMARK_KEY, value=outcome["watermark"])
        context["outlet_events"][asset].extra = outcome["event"]
        return outcome

    return publish()
