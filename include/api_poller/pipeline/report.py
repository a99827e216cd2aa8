"""The job summary the report step publishes (and fails on, if pages are missing).

``report_job`` reports a job of the seed's ``api_poller`` DAG; ``report_source_job`` a job of a
source DAG, whose record counts come from what its fetch tasks fetched (there is no planned total
record count); for an incremental source it says where the watermark would go, which the publish
step (``pipeline.publish``) advances once the job's snapshot is published.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from api_poller import names
from api_poller.aws.status_checkpoint import StatusCheckpoint, job_checkpoints
from api_poller.core.keys import processed_prefix, s3_uri
from api_poller.core.lifecycle import PageState, merge_page_statuses, summarize

if TYPE_CHECKING:
    from airflow.sdk.types import RuntimeTaskInstanceProtocol

    from api_poller.aws.clients import S3Client
    from api_poller.core.incremental import CursorValue
    from api_poller.settings import PollerSettings
    from api_poller.sources.spec import SourceSpec

log = logging.getLogger(__name__)


def job_summary(
    *,
    job_id: str,
    total_pages: int,
    total_records: int,
    processed_bucket: str,
    statuses: Mapping[str, Mapping[str, Any]],
    reconciliation: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The job's summary from its page records (``statuses``: each page's merged record)."""
    failed = {
        page: record.get("reason", "unknown")
        for page, record in sorted(statuses.items())
        if record["state"] == PageState.FAILED_TO_COMPLETE
    }
    succeeded = sum(1 for r in statuses.values() if r["state"] == PageState.SUCCESSFULLY_COMPLETED)
    records_written = sum(
        int(record.get("records") or 0)
        for record in statuses.values()
        if record["state"] == PageState.SUCCESSFULLY_COMPLETED
    )
    if reconciliation:
        records_written = reconciliation["recordsWritten"]
    return {
        "jobId": job_id,
        "progress": summarize(statuses, total_pages),
        "totalRecords": total_records,
        "recordsWritten": records_written,
        "processedLocation": s3_uri(processed_bucket, processed_prefix(job_id)),
        "failedPages": failed,
        "reconciliation": dict(reconciliation) if reconciliation else None,
        "complete": not failed
        and succeeded == total_pages
        and (reconciliation is None or bool(reconciliation["complete"])),
    }


class NothingToReport(Exception):
    """The plan did not succeed, so the job has no pages to report on."""


class IncompleteJob(Exception):
    """Pages failed or records are missing or duplicated."""


def merged_job_statuses(
    ti: RuntimeTaskInstanceProtocol,
    checkpoints: Mapping[str, list[StatusCheckpoint]],
    task_ids: Sequence[str] = names.STATUS_TASK_IDS,
) -> dict[str, dict[str, Any]]:
    """Each page's latest record in the run's ``task_ids``: what they published (all map indexes)
    and their S3 checkpoints (a task instance whose last try was killed before it published still
    counts), merged a chunk at a time: only the merged records are held, whatever the job's size."""
    from api_poller.adapters.status_publishing import iter_published_page_records

    saved = (checkpoint.iter_records() for task_id in task_ids for checkpoint in checkpoints.get(task_id, []))
    return merge_page_statuses(itertools.chain(iter_published_page_records(ti, task_ids), *saved))


def _plan_of(ti: RuntimeTaskInstanceProtocol) -> tuple[dict[str, Any], list[Mapping[str, Any]]]:
    """The plan step's job description and return value; NothingToReport if it failed."""
    job = ti.xcom_pull(task_ids=names.PLAN_TASK, key=names.JOB_KEY)
    plan = ti.xcom_pull(task_ids=names.PLAN_TASK)
    if not job or not plan:
        raise NothingToReport("the plan step failed (see its log), so nothing was fetched")
    return job, plan


def _publish(
    settings: PollerSettings, ti: RuntimeTaskInstanceProtocol, summary: dict[str, Any]
) -> dict[str, Any]:
    """Publish the summary (XCom ``summary``); raise IncompleteJob if the job is incomplete (or only
    warn, with API_POLLER_ON_INCOMPLETE=warn)."""
    ti.xcom_push(key=names.SUMMARY_KEY, value=summary)
    log.info("job summary: %s", json.dumps(summary, default=str))
    if not summary["complete"]:
        message = f"job incomplete: {summary['progress']}; failed pages: {summary['failedPages']}"
        reconciliation = summary.get("reconciliation")
        if reconciliation and not reconciliation["complete"]:
            message += f"; reconciliation: {reconciliation}"
        if settings.on_incomplete == "fail":
            raise IncompleteJob(message)
        log.warning("%s (API_POLLER_ON_INCOMPLETE=warn)", message)
    return summary


def report_job(
    settings: PollerSettings, ti: RuntimeTaskInstanceProtocol, s3_client: S3Client
) -> dict[str, Any]:
    """The report task: reconcile the output with the plan, publish the summary (XCom ``summary``,
    the reconciliation also as ``reconciliation``); raise if the job is incomplete."""
    from api_poller.pipeline.reconcile import reconcile_job

    job, plan = _plan_of(ti)
    checkpoints = job_checkpoints(s3_client, settings.raw_bucket, ti.run_id)
    latest = merged_job_statuses(ti, checkpoints)  # merged once, for both uses
    reconciliation = reconcile_job(settings, job, plan, s3_client, latest)
    ti.xcom_push(key=names.RECONCILIATION_KEY, value=reconciliation)
    summary = job_summary(
        job_id=ti.run_id,
        total_pages=job["total_pages"],
        total_records=job["total_records"],
        processed_bucket=settings.processed_bucket,
        statuses=latest,
        reconciliation=reconciliation,
    )
    return _publish(settings, ti, summary)


# --- sources ----------------------------------------------------------------------------------


def walk_outcome(ti: RuntimeTaskInstanceProtocol) -> dict[str, Any]:
    """How the walk of a walked source ended: its fetch task's result, or why there is none."""
    results = [result for result in ti.xcom_pull(task_ids=[names.FETCH_TASK]) or [] if result]
    if not results:
        return {"complete": False, "stop_reason": "unfinished", "stop_detail": "the walk's fetch task failed"}
    result = results[0]
    keys = ("pages", "complete", "stop_reason", "stop_detail", "truncated")
    return {key: result.get(key) for key in keys}


def _stored_max_cursor(s3_client: S3Client, bucket: str, key: str) -> CursorValue | None:
    text = s3_client.head_object(Bucket=bucket, Key=key).get("Metadata", {}).get("max-cursor")
    try:
        value = json.loads(text) if text is not None else None
    except ValueError:
        return None
    return value if isinstance(value, str | int | float) and not isinstance(value, bool) else None


def job_max_cursor(
    s3_client: S3Client, bucket: str, job_id: str, pages: Iterable[str], processed: Mapping[str, Any]
) -> CursorValue | None:
    """The highest cursor value the job's pages wrote: from the consumer's page records, or, for
    pages processed elsewhere (another consumer, an earlier try), from the processed object."""
    from api_poller.core.incremental import is_later
    from api_poller.core.keys import processed_key

    best: CursorValue | None = None
    for page in pages:
        record = processed.get(page) or {}
        value = record.get("max_cursor")
        if value is None and record.get("processed_key") is None:
            value = _stored_max_cursor(s3_client, bucket, processed_key(job_id, page))
        if value is not None and (best is None or is_later(value, best)):
            best = value
    return best


def pending_source_watermark(
    settings: PollerSettings,
    spec: SourceSpec,
    s3_client: S3Client,
    *,
    job_id: str,
    complete: bool,
    pages: Iterable[str],
    processed: Mapping[str, Any],
) -> dict[str, Any]:
    """Where an incremental source's watermark is and where the job would take it (``jobMax``).

    The report does not move it: the publish step advances it to ``jobMax`` once the job's
    snapshot is published (``pipeline.publish``), so a job whose publish fails is fetched again.
    """
    from api_poller.aws.watermark import read_watermark

    before = read_watermark(s3_client, settings.processed_bucket, spec.name)
    outcome: dict[str, Any] = {"before": before.value if before else None, "advanced": False}
    if not complete:
        outcome["reason"] = "the job is incomplete: the watermark stays where it was"
        return outcome
    outcome["jobMax"] = job_max_cursor(s3_client, settings.processed_bucket, job_id, pages, processed)
    outcome["reason"] = "advanced by the publish step once the snapshot is published"
    return outcome


def report_source_job(
    settings: PollerSettings, spec: SourceSpec, ti: RuntimeTaskInstanceProtocol, s3_client: S3Client
) -> dict[str, Any]:
    """The report task of a source: reconcile what was written with what was fetched, publish the
    summary (XComs ``summary`` and ``reconciliation``) with, for an incremental source, the
    watermark the job would advance to (XCom ``watermark``; the publish step advances it); raise
    if the job is incomplete."""
    from api_poller.pipeline.consume import plan_page_ids
    from api_poller.pipeline.reconcile import reconcile_source_output

    job, plan = _plan_of(ti)
    checkpoints = job_checkpoints(s3_client, settings.raw_bucket, ti.run_id)
    fetch_statuses = merged_job_statuses(ti, checkpoints, [names.FETCH_TASK])
    consumed = merged_job_statuses(ti, checkpoints, [names.CONSUME_TASK_ID])
    processed = {
        page: record
        for page, record in consumed.items()
        if record["state"] == PageState.SUCCESSFULLY_COMPLETED
    }
    planned, walked = plan_page_ids(plan)
    # A walk's pages are the ones it recorded (the page that failed it included).
    pages = sorted(fetch_statuses) if walked else planned
    reconciliation = reconcile_source_output(
        s3_client=s3_client,
        processed_bucket=settings.processed_bucket,
        job_id=job["job_id"],
        pages=pages,
        fetched={page: record.get("records") for page, record in fetch_statuses.items()},
        written={page: record["records"] for page, record in processed.items() if "records" in record},
        primary_key=spec.primary_key,
        read_output=settings.reconcile == "full",
        resumed=frozenset(
            page
            for page, record in fetch_statuses.items()
            if record.get("resumed") and "records" not in record
        ),
    )
    if walked:
        reconciliation["walk"] = walk_outcome(ti)
        reconciliation["complete"] = reconciliation["complete"] and bool(reconciliation["walk"]["complete"])
    ti.xcom_push(key=names.RECONCILIATION_KEY, value=reconciliation)
    summary = job_summary(
        job_id=ti.run_id,
        total_pages=len(pages),
        total_records=reconciliation["totalRecords"],
        processed_bucket=settings.processed_bucket,
        # Every consumer record: a dead-lettered page is FailedToComplete with its reason.
        statuses=merge_page_statuses([fetch_statuses, consumed]),
        reconciliation=reconciliation,
    )
    summary.update(source=spec.name, mode=job["mode"])
    if spec.incremental is not None:
        summary["watermark"] = pending_source_watermark(
            settings, spec, s3_client, job_id=job["job_id"], complete=summary["complete"], pages=pages,
            processed=processed,
        )  # fmt: skip
        ti.xcom_push(key=names.WATERMARK_KEY, value=summary["watermark"])
    return _publish(settings, ti, summary)
