"""Shared pieces of the source engine tests: a Connection, sources per simulator endpoint, and a
whole job (plan -> every fetch task -> process every enqueued page) run in process on moto."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from api_poller.aws.messaging import parse_message
from api_poller.core.lifecycle import StatusRecorder, merge_page_statuses
from api_poller.pipeline.process import process_page
from api_poller.pipeline.source_fetch import fetch_source_batch, fetch_task_arguments
from api_poller.pipeline.source_plan import plan_source_job
from api_poller.settings import PollerSettings
from api_poller.sources.spec import SourceSpec, parse_source

SETTINGS = PollerSettings(
    raw_bucket="raw-sources",
    processed_bucket="processed-sources",
    http_attempts=3,
    retry_initial_seconds=0.01,
    retry_max_seconds=0.05,
    http_timeout_seconds=10,
    status_flush_seconds=0,
)
QUIET: dict[str, Any] = {"latency_ms": 0, "error_rate": 0}

# One source per simulator endpoint (and paginator kind); page_size 10 everywhere.
PAGINATED: dict[str, dict[str, Any]] = {
    "offset_total": {
        "path": "/offset/items",
        "records": "data.items",
        "paginator": {"type": "offset", "page_size": 10, "total_path": "meta.total"},
    },
    "offset_walk": {
        "path": "/offset/items",
        "records": "$.data.items",
        "paginator": {"type": "offset", "page_size": 10},
    },
    "page_number_pages": {
        "path": "/pages/items",
        "records": "results",
        "paginator": {"type": "page_number", "page_size": 10, "total_pages_path": "total_pages"},
    },
    "page_number_records": {
        "path": "/pages/items",
        "records": "results",
        "paginator": {"type": "page_number", "page_size": 10, "total_records_path": "total_records"},
    },
    "cursor": {
        "path": "/cursor/items",
        "records": "items",
        "paginator": {"type": "cursor", "cursor_path": "next_cursor", "page_size": 10},
    },
    "cursor_has_more": {
        "path": "/cursor-has-more/items",
        "records": "records",
        "paginator": {
            "type": "cursor",
            "has_more_path": "has_more",
            "cursor_key": "id",
            "cursor_param": "after",
            "page_size": 10,
        },
    },
    "next_url_body": {
        "path": "/next-body/items",
        "records": "items",
        "paginator": {"type": "next_url", "next_url_path": "links.next", "page_size": 10},
    },
    "next_url_link_header": {
        "path": "/link/items",
        "records": "$",
        "paginator": {"type": "next_url", "link_header": True, "limit_param": "per_page", "page_size": 10},
    },
}


@dataclass
class Conn:
    """An Airflow HTTP Connection, duck-typed (what ``partner.auth`` reads)."""

    host: str
    login: str | None = None
    password: str | None = None
    schema: str | None = None
    port: int | None = None
    conn_id: str = "partner"
    extra_dejson: dict[str, Any] = field(default_factory=dict)


def source(kind: str = "offset_total", **fields: Any) -> SourceSpec:
    document = {"name": "acme", "connection_id": "partner", "primary_key": "id", **PAGINATED[kind], **fields}
    return parse_source(document, f"{kind}.yaml")


def make_resources(aws: Any) -> str:
    aws.s3.create_bucket(Bucket=SETTINGS.raw_bucket)
    aws.s3.create_bucket(Bucket=SETTINGS.processed_bucket)
    return str(aws.sqs.create_queue(QueueName="sources-process")["QueueUrl"])


@dataclass
class JobOutcome:
    plan: dict[str, Any]
    fetches: list[dict[str, Any]]
    statuses: dict[str, dict[str, Any]]
    records: list[dict[str, Any]]
    processed: dict[str, Any]  # page id -> ProcessedPage


def fetch_all(
    aws: Any,
    spec: SourceSpec,
    plan: Mapping[str, Any],
    connection: Conn,
    queue_url: str,
    job_id: str,
    settings: PollerSettings = SETTINGS,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    published: list[dict[str, Any]] = []
    results = []
    for arguments in fetch_task_arguments(plan):
        # Each publication's chunks hold the latest records of the pages they cover.
        recorder = StatusRecorder(
            lambda publication: published.extend(publication.chunks.values()), interval=0
        )
        results.append(
            fetch_source_batch(
                settings,
                spec,
                job_id=job_id,
                connection=connection,
                s3_client=aws.s3,
                sqs_client=aws.sqs,
                queue_url=queue_url,
                recorder=recorder,
                **arguments,
            )
        )
    return results, merge_page_statuses(published)


def process_all(aws: Any, queue_url: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Receive every message, process its page, and read back the NDJSON written."""
    processed = {}
    while True:
        batch = aws.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not batch:
            break
        for message in batch:
            pointer = parse_message(message)
            processed[pointer.page_id] = process_page(aws.s3, pointer, SETTINGS.processed_bucket)
            aws.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    records = []
    for page in sorted(processed.values(), key=lambda page: page.page_id):
        body = aws.s3.get_object(Bucket=SETTINGS.processed_bucket, Key=page.key)["Body"].read()
        records.extend(json.loads(line) for line in body.decode().splitlines() if line)
    return records, processed


def run_source_job(
    aws: Any,
    spec: SourceSpec,
    connection: Conn,
    *,
    conf: Mapping[str, Any] | None = None,
    watermark: Any = None,
    job_id: str = "manual__2026-12-02T05:00:00+00:00",
    settings: PollerSettings = SETTINGS,
) -> JobOutcome:
    queue_url = make_resources(aws)
    plan = plan_source_job(spec, job_id, conf, settings, connection, watermark)
    fetches, statuses = fetch_all(aws, spec, plan, connection, queue_url, job_id, settings)
    records, processed = process_all(aws, queue_url)
    return JobOutcome(plan, fetches, statuses, records, processed)
