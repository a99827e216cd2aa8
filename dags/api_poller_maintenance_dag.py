"""api_poller_maintenance: retention of the poller's job status, raw leftovers, dead letters and
source snapshots.

Five independent tasks, daily. The logic lives in ``api_poller.operations.retention`` (one module
per concern); this file wires it up.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from airflow.sdk import Param, dag, get_current_context, task

from api_poller import names
from api_poller.aws.clients import S3Client, SqsClient
from api_poller.settings import load_settings

settings = load_settings()

DOC = f"""
### API poller maintenance
Daily retention for the `{names.POLLER_DAG_ID}` DAG (`API_POLLER_RETENTION_DAYS`, now
{settings.retention_days}):

* **{names.PURGE_STATUS_TASK}**: deletes the XComs (page statuses, plan, summary) of
  `{names.POLLER_DAG_ID}` runs that ended more than the retention ago, with `airflow db clean`
  (table `xcom`, DAG `{names.POLLER_DAG_ID}` only). The DAG runs stay: the job API then answers
  that the job expired.
* **{names.REMOVE_RAW_LEFTOVERS_TASK}**: deletes raw pages left in
  `s3://{settings.raw_bucket}/jobs/<job>/raw/` (pages that never completed) and the error notes in
  `jobs/<job>/errors/`, older than the retention.
* **{names.REPORT_DEAD_LETTERS_TASK}**: lists the messages of `{settings.dead_letter_queue_name}`
  that SQS drops within {settings.dead_letter_expiry_margin_days:g} days (job, page, age), without
  deleting them.
* **{names.EXPIRE_SNAPSHOTS_TASK}**: for each source with `output.keep_snapshots: N`, expires its
  published snapshots in `s3://{settings.processed_bucket}/snapshots/<source>/` beyond the newest N
  (never the one `_latest.json` names); removes unfinished snapshot folders (no manifest) older
  than the retention, for every source.
* **{names.REMOVE_PUBLISHED_RECORDS_TASK}**: deletes the per-page record files
  (`jobs/<job>/records/`) of source jobs published more than the retention ago.

Trigger it by hand with `dry_run` to see what would go. See docs/operations.md.
"""


def _run_options() -> tuple[datetime, float, bool]:
    """(as of, retention days, dry run) of this run, from its Params."""
    params = get_current_context()["params"]
    as_of = datetime.now(UTC)
    if params.get("as_of"):
        as_of = datetime.fromisoformat(params["as_of"])
        as_of = as_of.replace(tzinfo=UTC) if as_of.tzinfo is None else as_of
    return as_of, float(params["retention_days"]), bool(params.get("dry_run"))


@contextmanager
def _bucket_retention(bucket: str) -> Iterator[tuple[S3Client, datetime, bool]]:
    """(S3 client, cutoff, dry run) of this run for a task cleaning ``bucket``; the task is
    skipped if the bucket does not exist (yet)."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.sdk.exceptions import AirflowSkipException

    as_of, retention_days, dry_run = _run_options()
    s3: S3Client = S3Hook(aws_conn_id=settings.aws_conn_id).get_conn()
    try:
        yield s3, as_of - timedelta(days=retention_days), dry_run
    except s3.exceptions.NoSuchBucket:
        raise AirflowSkipException(f"bucket {bucket} does not exist (yet)") from None


@dag(
    dag_id=names.MAINTENANCE_DAG_ID,
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=["api-poller"],
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5)},
    params={
        "retention_days": Param(
            settings.retention_days,
            type="number",
            exclusiveMinimum=0,
            title="Retention (days)",
            description="Jobs that ended longer ago than this lose their status and raw leftovers.",
        ),
        "dry_run": Param(
            False, type="boolean", title="Dry run", description="Only report what would be removed."
        ),
        "as_of": Param(
            None,
            type=["null", "string"],
            title="As of",
            description="ISO date-time to age everything from (empty: now). For what-if runs and tests.",
        ),
    },
)
def api_poller_maintenance() -> None:
    @task(task_id=names.PURGE_STATUS_TASK)
    def purge_expired_status() -> dict:
        """Purge the XComs of the poller's runs that ended before the retention (airflow db clean)."""
        from api_poller.operations.retention.purge_route import purge_status_from_task

        as_of, retention_days, dry_run = _run_options()
        return purge_status_from_task(settings, as_of=as_of, retention_days=retention_days, dry_run=dry_run)

    @task(task_id=names.REMOVE_RAW_LEFTOVERS_TASK)
    def remove_expired_raw_payloads() -> dict:
        """Delete raw pages and error notes older than the retention from the raw bucket."""
        from api_poller.operations.retention.raw_leftovers import remove_expired_raw_payloads

        with _bucket_retention(settings.raw_bucket) as (s3, cutoff, dry_run):
            return remove_expired_raw_payloads(s3, settings.raw_bucket, cutoff=cutoff, dry_run=dry_run)

    @task(task_id=names.REPORT_DEAD_LETTERS_TASK)
    def report_expiring_dead_letters() -> dict:
        """Report the dead letters SQS is about to drop (job, page, age); nothing is deleted."""
        from airflow.providers.amazon.aws.hooks.sqs import SqsHook
        from airflow.sdk.exceptions import AirflowSkipException

        from api_poller.operations.retention.dead_letters import expiring_dead_letters

        as_of, _, _ = _run_options()
        sqs: SqsClient = SqsHook(aws_conn_id=settings.aws_conn_id).conn
        try:
            queue_url = sqs.get_queue_url(QueueName=settings.dead_letter_queue_name)["QueueUrl"]
        except sqs.exceptions.QueueDoesNotExist:
            raise AirflowSkipException(
                f"queue {settings.dead_letter_queue_name} does not exist (yet)"
            ) from None
        return expiring_dead_letters(
            sqs, queue_url, now=as_of, margin=timedelta(days=settings.dead_letter_expiry_margin_days)
        )

    @task(task_id=names.EXPIRE_SNAPSHOTS_TASK)
    def expire_old_snapshots() -> list[dict]:
        """Expire snapshots beyond each source's keep_snapshots; remove unfinished snapshot folders."""
        from api_poller.operations.retention.snapshots import expire_snapshots
        from api_poller.sources.folder import sources_folder
        from api_poller.sources.spec import load_sources

        sources, _ = load_sources(sources_folder(settings, Path(__file__).resolve().parent))
        bucket = settings.processed_bucket
        with _bucket_retention(bucket) as (s3, cutoff, dry_run):
            return [
                expire_snapshots(
                    s3, bucket, name, keep=spec.output.keep_snapshots, cutoff=cutoff, dry_run=dry_run
                )
                for name, spec in sorted(sources.items())
            ]

    @task(task_id=names.REMOVE_PUBLISHED_RECORDS_TASK)
    def remove_published_page_records() -> dict:
        """Delete per-page record files of source jobs published before the retention."""
        from api_poller.operations.retention.published_records import remove_published_page_records

        bucket = settings.processed_bucket
        with _bucket_retention(bucket) as (s3, cutoff, dry_run):
            return remove_published_page_records(s3, bucket, cutoff=cutoff, dry_run=dry_run)

    purge_expired_status()
    remove_expired_raw_payloads()
    report_expiring_dead_letters()
    expire_old_snapshots()
    remove_published_page_records()


api_poller_maintenance()
