"""A snapshot's manifest (written last, next to its data) and a source's latest-snapshot pointer.

The manifest lists every data file with its records and bytes, and says what the snapshot is:
source, job, date partition, format, the plan's totals, the incremental watermark, and the schema
(field -> JSON types seen; for Parquet, how columns read back). Its existence is what makes a
snapshot complete: it is written after every data file, and never rewritten (a published snapshot
is immutable). The pointer ``snapshots/<source>/_latest.json`` names the newest published
snapshot's manifest; it is written only once that manifest exists. See docs/output.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from api_poller.aws.objects import read_object
from api_poller.core.keys import latest_snapshot_key, s3_uri, safe_job_id

if TYPE_CHECKING:
    from api_poller.aws.clients import S3Client
    from api_poller.output.rollup import Rollup

MANIFEST_VERSION = 1


def build_manifest(
    *,
    bucket: str,
    source: str,
    job_id: str,
    dt: str,
    prefix: str,
    output_format: str,
    rollup: Rollup,
    plan_totals: Mapping[str, Any],
    watermark: Mapping[str, Any] | None,
    published_at: datetime | None = None,
) -> dict[str, Any]:
    """The manifest document of a rolled-up snapshot."""
    schema: dict[str, Any] = {"fields": rollup.fields, "absentIn": rollup.absent}
    if rollup.parquet is not None:
        schema["parquet"] = rollup.parquet.describe()
    return {
        "manifestVersion": MANIFEST_VERSION,
        "source": source,
        "jobId": job_id,
        "job": safe_job_id(job_id),
        "dt": dt,
        "format": output_format,
        "location": s3_uri(bucket, prefix),
        "files": [
            {"key": file.key, "uri": s3_uri(bucket, file.key), "records": file.records, "bytes": file.bytes}
            for file in rollup.files
        ],
        "records": rollup.records,
        "bytes": sum(file.bytes for file in rollup.files),
        "pages": rollup.pages,
        "plan": dict(plan_totals),
        "watermark": dict(watermark) if watermark is not None else None,
        "schema": schema,
        "publishedAt": (published_at or datetime.now(UTC)).isoformat(),
    }


def read_json_object(s3_client: S3Client, bucket: str, key: str) -> dict[str, Any] | None:
    """A JSON document stored at ``key``, or None when there is none."""
    body = read_object(s3_client, bucket, key)
    if body is None:
        return None
    document: dict[str, Any] = json.loads(body)
    return document


def write_json_object(s3_client: S3Client, bucket: str, key: str, document: Mapping[str, Any]) -> None:
    s3_client.put_object(
        Bucket=bucket,
        Key=key,
        Body=json.dumps(document, indent=1, sort_keys=False).encode(),
        ContentType="application/json",
    )


def pointer_document(manifest: Mapping[str, Any], manifest_key: str, bucket: str) -> dict[str, Any]:
    """The latest-snapshot pointer naming a manifest (enough to find and judge the snapshot)."""
    keys = ("source", "jobId", "job", "dt", "format", "location", "records", "pages", "publishedAt")
    return {**{key: manifest[key] for key in keys}, "manifest": s3_uri(bucket, manifest_key)}


def update_latest_pointer(
    s3_client: S3Client, bucket: str, manifest: Mapping[str, Any], manifest_key: str
) -> dict[str, Any]:
    """Point ``snapshots/<source>/_latest.json`` at the manifest (which must already exist)."""
    document = pointer_document(manifest, manifest_key, bucket)
    write_json_object(s3_client, bucket, latest_snapshot_key(manifest["source"]), document)
    return document


def read_manifest_at(s3_client: S3Client, uri: str) -> dict[str, Any]:
    """The manifest at an ``s3://`` URI (an Asset event's ``manifest``); FileNotFoundError if gone
    (expired by the retention)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    manifest = read_json_object(s3_client, bucket, key)
    if manifest is None:
        raise FileNotFoundError(f"no manifest at {uri} (expired by the retention?)")
    return manifest


def describe_snapshot(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """What a consumer learns from a manifest, in a few fields (for a log line or an XCom)."""
    return {
        "source": manifest["source"],
        "jobId": manifest["jobId"],
        "dt": manifest["dt"],
        "format": manifest["format"],
        "records": manifest["records"],
        "files": len(manifest["files"]),
        "bytes": manifest["bytes"],
        "fields": sorted(manifest["schema"]["fields"]),
    }
