"""The job summary the report step publishes (and fails on, if pages are missing)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from api_poller import names
from api_poller.core.keys import processed_prefix, s3_uri
from api_poller.core.lifecycle import PageState, merge_page_statuses, summarize

if TYPE_CHECKING:
    from airflow.sdk.types import RuntimeTaskInstanceProtocol

    from api_poller.aws.clients import S3Client
    from api_poller.settings import PollerSettings

log = logging.getLogger(__name__)


def job_summary(
    *,
    job_id: str,
    total_pages: int,
    total_records: int,
    processed_bucket: str,
    published_statuses: Iterable[Mapping[str, Any] | None],
    reconciliation: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    latest = merge_page_statuses(published_statuses)
    failed = {
        page: record.get("reason", "unknown")
        for page, record in sorted(latest.items())
        if record["state"] == PageState.FAILED_TO_COMPLETE
    }
    succeeded = sum(1 for r in latest.values() if r["state"] == PageState.SUCCESSFULLY_COMPLETED)
    records_written = sum(
        int(record.get("records") or 0)
        for record in latest.values()
        if record["state"] == PageState.SUCCESSFULLY_COMPLETED
    )
    if reconciliation:
        records_written = reconciliation["recordsWritten"]
    return {
        "jobId": job_id,
        "progress": summarize(latest, total_pages),
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


def published_statuses(ti: RuntimeTaskInstanceProtocol) -> list[Mapping[str, Any] | None]:
    """Every ``page_status`` XCom of the run (all map indexes of all status-publishing tasks)."""
    return ti.xcom_pull(task_ids=list(names.STATUS_TASK_IDS), key=names.STATUS_KEY)


def report_job(
    settings: PollerSettings, ti: RuntimeTaskInstanceProtocol, s3_client: S3Client
) -> dict[str, Any]:
    """The report task: reconcile the output with the plan, publish the summary (XCom ``summary``,
    the reconciliation also as ``reconciliation``); raise if the job is incomplete."""
    from api_poller.pipeline.reconcile import reconcile_job

    job = ti.xcom_pull(task_ids=names.PLAN_TASK, key=names.JOB_KEY)
    plan = ti.xcom_pull(task_ids=names.PLAN_TASK)
    if not job or not plan:
        raise NothingToReport("the plan step failed (see its log), so nothing was fetched")
    latest = merge_page_statuses(published_statuses(ti))  # merged once, for both uses
    reconciliation = reconcile_job(settings, job, plan, s3_client, latest)
    ti.xcom_push(key=names.RECONCILIATION_KEY, value=reconciliation)
    summary = job_summary(
        job_id=ti.run_id,
        total_pages=job["total_pages"],
        total_records=job["total_records"],
        processed_bucket=settings.processed_bucket,
        published_statuses=[latest],
        reconciliation=reconciliation,
    )
    ti.xcom_push(key=names.SUMMARY_KEY, value=summary)
    log.info("job summary: %s", json.dumps(summary))
    if not summary["complete"]:
        message = f"job incomplete: {summary['progress']}; failed pages: {summary['failedPages']}"
        if summary["reconciliation"] and not summary["reconciliation"]["complete"]:
            message += f"; reconciliation: {summary['reconciliation']}"
        if settings.on_incomplete == "fail":
            raise IncompleteJob(message)
        log.warning("%s (API_POLLER_ON_INCOMPLETE=warn)", message)
    return summary
