"""What a job reads and writes, told to Airflow's hook-level lineage.

The OpenLineage provider (when installed) reads ``get_hook_lineage_collector()`` after each task
and reports its inputs and outputs. The S3Hook's own load/download methods report themselves, but
the poller writes through the hook's boto3 client (batched, threaded), so the tasks report here:
once per task, not per page.

* The fetch task: its input is the partner API (``scheme://host[:port]/path`` only: never the
  query, which may carry a key, nor credentials), its output the job's raw prefix.
* The consumer: its input is the job's raw prefix, its output the job's processed prefix.
* ``report_s3_output`` for any other step that writes to S3 (a published snapshot, say).

Without a lineage reader Airflow's collector is a no-op, and so are these calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from airflow.sdk import BaseHook


def api_asset_uri(url: str) -> str:
    """The API's URL as lineage shows it: scheme, host, port and path; no credentials, query or
    fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", "", ""))


def _s3_hook(aws_conn_id: str | None) -> BaseHook:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=aws_conn_id)


def report_api_input(url: str, conn_id: str | None = None) -> None:
    """The partner API a task reads (``url`` is reduced to scheme, host, port and path)."""
    from airflow.providers.http.hooks.http import HttpHook
    from airflow.sdk.lineage import get_hook_lineage_collector

    hook = HttpHook(method="GET", http_conn_id=conn_id or "")  # the context: nothing is fetched
    get_hook_lineage_collector().add_input_asset(context=hook, uri=api_asset_uri(url))


def report_s3_input(bucket: str, key: str, *, aws_conn_id: str | None) -> None:
    """An S3 object or prefix a task reads."""
    from airflow.sdk.lineage import get_hook_lineage_collector

    get_hook_lineage_collector().add_input_asset(
        context=_s3_hook(aws_conn_id), scheme="s3", asset_kwargs={"bucket": bucket, "key": key}
    )


def report_s3_output(bucket: str, key: str, *, aws_conn_id: str | None) -> None:
    """An S3 object or prefix a task writes."""
    from airflow.sdk.lineage import get_hook_lineage_collector

    get_hook_lineage_collector().add_output_asset(
        context=_s3_hook(aws_conn_id), scheme="s3", asset_kwargs={"bucket": bucket, "key": key}
    )


def report_fetch_lineage(
    url: str, *, conn_id: str | None, raw_bucket: str, job_id: str, aws_conn_id: str
) -> None:
    """A fetch task: the API in, the job's raw prefix out."""
    from api_poller.core.keys import raw_prefix

    report_api_input(url, conn_id)
    report_s3_output(raw_bucket, raw_prefix(job_id), aws_conn_id=aws_conn_id)


def report_consume_lineage(
    *, raw_bucket: str, processed_bucket: str, job_id: str, aws_conn_id: str | None
) -> None:
    """The consumer: the job's raw prefix in, its processed prefix out."""
    from api_poller.core.keys import processed_prefix, raw_prefix

    report_s3_input(raw_bucket, raw_prefix(job_id), aws_conn_id=aws_conn_id)
    report_s3_output(processed_bucket, processed_prefix(job_id), aws_conn_id=aws_conn_id)
