"""Snapshot retention (moto): the newest keep_snapshots stay and the pointer's always; the manifest
goes before the data; unfinished folders go once old; nothing goes without keep_snapshots."""

from __future__ import annotations

import json
from typing import Any

from api_poller.core.keys import latest_snapshot_key
from api_poller.operations.retention.published_records import remove_published_page_records
from api_poller.operations.retention.snapshots import expire_snapshots
from tests.helpers import PROCESSED_BUCKET, AwsClients
from tests.unit.operations.retention.seeding import boundary_between_writes, put_object

ROOT = "snapshots/orders/"


def publish(aws: AwsClients, job: str, published_at: str, *, dt: str = "2026-12-01") -> str:
    prefix = f"{ROOT}dt={dt}/job={job}/"
    put_object(aws.s3, PROCESSED_BUCKET, f"{prefix}part-00000.parquet")
    put_object(aws.s3, PROCESSED_BUCKET, f"{prefix}part-00001.parquet")
    manifest: dict[str, Any] = {"publishedAt": published_at}
    aws.s3.put_object(Bucket=PROCESSED_BUCKET, Key=f"{prefix}_manifest.json", Body=json.dumps(manifest))
    return prefix


def point_at(aws: AwsClients, prefix: str) -> None:
    pointer = {"manifest": f"s3://{PROCESSED_BUCKET}/{prefix}_manifest.json"}
    aws.s3.put_object(Bucket=PROCESSED_BUCKET, Key=latest_snapshot_key("orders"), Body=json.dumps(pointer))


def test_only_the_newest_snapshots_and_the_pointers_stay(aws: AwsClients) -> None:
    aws.s3.create_bucket(Bucket=PROCESSED_BUCKET)
    oldest = publish(aws, "a", "2026-12-01T01:00:00+00:00")
    older = publish(aws, "b", "2026-12-01T02:00:00+00:00")
    newer = publish(aws, "c", "2026-12-01T03:00:00+00:00", dt="2026-12-02")
    newest = publish(aws, "d", "2026-12-01T04:00:00+00:00", dt="2026-12-02")
    point_at(aws, oldest)  # e.g. a rerun of an old job was published last
    cutoff = boundary_between_writes()

    dry = expire_snapshots(aws.s3, PROCESSED_BUCKET, "orders", keep=2, cutoff=cutoff, dry_run=True)
    assert dry["expired"] == [older] and len(aws.keys(PROCESSED_BUCKET, older)) == 3

    report = expire_snapshots(aws.s3, PROCESSED_BUCKET, "orders", keep=2, cutoff=cutoff)

    assert report["expired"] == [older] and report["snapshots"] == 4
    assert aws.keys(PROCESSED_BUCKET, older) == []
    for kept in (oldest, newer, newest):
        assert len(aws.keys(PROCESSED_BUCKET, kept)) == 3
    assert latest_snapshot_key("orders") in aws.keys(PROCESSED_BUCKET)


def test_without_keep_snapshots_no_published_snapshot_goes_but_old_unfinished_folders_do(
    aws: AwsClients,
) -> None:
    aws.s3.create_bucket(Bucket=PROCESSED_BUCKET)
    published = publish(aws, "a", "2026-12-01T01:00:00+00:00")
    put_object(aws.s3, PROCESSED_BUCKET, f"{ROOT}dt=2026-12-01/job=failed/part-00000.parquet")
    cutoff = boundary_between_writes()
    put_object(aws.s3, PROCESSED_BUCKET, f"{ROOT}dt=2026-12-02/job=running/part-00000.parquet")

    report = expire_snapshots(aws.s3, PROCESSED_BUCKET, "orders", keep=None, cutoff=cutoff)

    assert report["expired"] == []
    assert report["unfinished_removed"] == [f"{ROOT}dt=2026-12-01/job=failed/"]
    assert len(aws.keys(PROCESSED_BUCKET, published)) == 3
    assert aws.keys(PROCESSED_BUCKET, f"{ROOT}dt=2026-12-02/") == [
        f"{ROOT}dt=2026-12-02/job=running/part-00000.parquet"
    ]


def test_per_page_records_go_only_for_jobs_published_before_the_cutoff(aws: AwsClients) -> None:
    aws.s3.create_bucket(Bucket=PROCESSED_BUCKET)
    for key in (
        "jobs/old/records/page-000000.ndjson",
        "jobs/old/records/page-000001.ndjson",
        "jobs/old/_published.json",
        "jobs/seed/records/page-000000.ndjson",  # never published: the seed DAG's output
    ):
        put_object(aws.s3, PROCESSED_BUCKET, key)
    cutoff = boundary_between_writes()
    put_object(aws.s3, PROCESSED_BUCKET, "jobs/new/records/page-000000.ndjson")
    put_object(aws.s3, PROCESSED_BUCKET, "jobs/new/_published.json")

    report = remove_published_page_records(aws.s3, PROCESSED_BUCKET, cutoff=cutoff)

    assert (report["jobs"], report["files"]) == (["old"], 2)
    assert aws.keys(PROCESSED_BUCKET) == [
        "jobs/new/_published.json",
        "jobs/new/records/page-000000.ndjson",
        "jobs/old/_published.json",
        "jobs/seed/records/page-000000.ndjson",
    ]
