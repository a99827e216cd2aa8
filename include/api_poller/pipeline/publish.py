"""The publish step of a source job: a complete job's records become a snapshot.

In order, each write only once the one before it succeeded:

1. the data files (``output.rollup``) under ``snapshots/<source>/dt=<date>/job=<job>/``;
2. the manifest, next to them (``_manifest.json``): from now on the snapshot is complete and
   immutable. A manifest that cannot be written fails the step: no pointer, no Asset event, no
   watermark move;
3. the source's pointer ``snapshots/<source>/_latest.json``;
4. an incremental source's watermark, advanced to the job's highest cursor value (the report
   step only computes it): a job whose snapshot is not published is fetched again next time;
5. the job's published marker ``jobs/<job>/_published.json``.

A retry after a failure between 2 and 5 finds the manifest and does not rewrite it (nor the data):
it resumes at 3. A rerun after 5 (the job cleared, the step cleared) finds the marker and publishes
nothing: a reader of the first manifest keeps seeing that snapshot, and no second event is sent.
The Airflow side (the Asset event, skipping) is in ``adapters.source_dag``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from api_poller.core.keys import (
    published_marker_key,
    s3_uri,
    snapshot_manifest_key,
    snapshot_prefix,
)
from api_poller.output.manifest import (
    build_manifest,
    read_json_object,
    update_latest_pointer,
    write_json_object,
)
from api_poller.output.rollup import roll_up_job

if TYPE_CHECKING:
    from api_poller.aws.clients import S3Client
    from api_poller.settings import PollerSettings
    from api_poller.sources.spec import SourceSpec

log = logging.getLogger(__name__)


class NothingToPublish(Exception):
    """The job is incomplete, or its snapshot is already published: the step has nothing to do."""


class SnapshotMismatch(Exception):
    """The rolled-up records are not the records the report counted: nothing is published."""


def snapshot_date(run_date: datetime) -> str:
    """The snapshot's ``dt`` partition: the run's logical date (or, for a run without one, the
    date it was triggered for), as a UTC date."""
    aware = run_date if run_date.tzinfo else run_date.replace(tzinfo=UTC)
    return aware.astimezone(UTC).date().isoformat()


def _plan_totals(summary: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "totalPages": summary["progress"]["Total"],
        "totalRecords": summary["totalRecords"],
        "recordsWritten": summary["recordsWritten"],
        "mode": summary.get("mode"),
    }


def _advance_watermark(
    settings: PollerSettings, spec: SourceSpec, s3_client: S3Client, job_id: str, pending: Mapping[str, Any]
) -> dict[str, Any]:
    from api_poller.aws.watermark import advance_watermark

    before = pending.get("before")
    after = advance_watermark(
        s3_client, settings.processed_bucket, spec.name, pending.get("jobMax"), job_id=job_id
    )
    outcome = {key: value for key, value in pending.items() if key != "reason"}
    outcome.update(after=after.value if after else None)
    outcome["advanced"] = after is not None and after.value != before
    return outcome


def publish_source_snapshot(
    settings: PollerSettings,
    spec: SourceSpec,
    s3_client: S3Client,
    *,
    job_id: str,
    dt: str,
    summary: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Publish the job's snapshot (see the module's steps); what was published, with the Asset
    event's extra under ``event``. NothingToPublish for an incomplete or already published job."""
    if not summary or not summary.get("complete"):
        raise NothingToPublish("the job is incomplete: no snapshot is published and no Asset event sent")
    bucket = settings.processed_bucket
    marker_key = published_marker_key(job_id)
    marker = read_json_object(s3_client, bucket, marker_key)
    if marker is not None:
        raise NothingToPublish(f"the job's snapshot is already published: {marker.get('manifest')}")
    prefix = snapshot_prefix(spec.name, dt, job_id)
    manifest_key = snapshot_manifest_key(prefix)
    manifest = read_json_object(s3_client, bucket, manifest_key)
    if manifest is not None:
        log.info("the manifest s3://%s/%s exists (an earlier try): not rewritten", bucket, manifest_key)
    else:
        rollup = roll_up_job(
            s3_client, bucket, job_id, prefix,
            output_format=spec.output.format, target_bytes=spec.output.target_file_bytes,
        )  # fmt: skip
        if rollup.records != summary["recordsWritten"]:
            raise SnapshotMismatch(
                f"the job's record files hold {rollup.records} records, the report counted "
                f"{summary['recordsWritten']}: nothing is published (rerun the job)"
            )
        pending = summary.get("watermark")
        watermark_plan = None
        if spec.incremental is not None and pending:
            watermark_plan = {
                "field": spec.incremental.cursor_field,
                "before": pending.get("before"),
                "jobMax": pending.get("jobMax"),
            }
        manifest = build_manifest(
            bucket=bucket, source=spec.name, job_id=job_id, dt=dt, prefix=prefix,
            output_format=spec.output.format, rollup=rollup, plan_totals=_plan_totals(summary),
            watermark=watermark_plan,
        )  # fmt: skip
        write_json_object(s3_client, bucket, manifest_key, manifest)
    pointer = update_latest_pointer(s3_client, bucket, manifest, manifest_key)
    watermark = None
    if spec.incremental is not None and summary.get("watermark"):
        watermark = _advance_watermark(settings, spec, s3_client, job_id, summary["watermark"])
    manifest_uri = s3_uri(bucket, manifest_key)
    marker = {"source": spec.name, "jobId": job_id, "manifest": manifest_uri}
    write_json_object(s3_client, bucket, marker_key, {**marker, "publishedAt": manifest["publishedAt"]})
    event = {
        "jobId": job_id,
        "source": spec.name,
        "snapshot": manifest["location"],
        "manifest": manifest_uri,
        "records": manifest["records"],
        "pages": manifest["pages"],
        "files": len(manifest["files"]),
        "format": manifest["format"],
        "dt": dt,
    }
    log.info(
        "published snapshot %s: %d records in %d files",
        manifest["location"],
        event["records"],
        event["files"],
    )
    return {"event": event, "pointer": pointer, "watermark": watermark, "bytes": manifest["bytes"]}
