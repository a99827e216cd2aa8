"""Old raw pages and error notes go; nothing else in the raw bucket is touched (moto)."""

from __future__ import annotations

from api_poller.operations.retention.raw_leftovers import remove_expired_raw_payloads
from tests.helpers import RAW_BUCKET, AwsClients
from tests.unit.operations.retention.seeding import boundary_between_writes, put_object


def test_raw_cleanup_deletes_only_old_raw_pages_and_error_notes(aws: AwsClients) -> None:
    aws.s3.create_bucket(Bucket=RAW_BUCKET)
    for key in (
        "jobs/a/raw/page-000001.json",
        "jobs/a/raw/page-000002.json",
        "jobs/a/errors/page-000002.json",
        "jobs/a/notes.txt",
        "x/raw.json",
    ):
        put_object(aws.s3, RAW_BUCKET, key)
    boundary = boundary_between_writes()
    put_object(aws.s3, RAW_BUCKET, "jobs/b/raw/page-000001.json")

    dry = remove_expired_raw_payloads(aws.s3, RAW_BUCKET, cutoff=boundary, dry_run=True)
    assert (dry["expired"], dry["deleted"], dry["kept_recent"]) == (3, 0, 1)
    assert len(aws.keys(RAW_BUCKET)) == 6

    report = remove_expired_raw_payloads(aws.s3, RAW_BUCKET, cutoff=boundary)
    assert (report["deleted"], report["raw_pages"], report["error_notes"]) == (3, 2, 1)
    assert report["jobs"] == {"a": 3}
    assert aws.keys(RAW_BUCKET) == ["jobs/a/notes.txt", "jobs/b/raw/page-000001.json", "x/raw.json"]
