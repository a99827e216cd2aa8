"""A task instance's status checkpoint on moto: written compactly, read back, absent or damaged
reads as none, and it lives where the retention removes a job's leftovers."""

from __future__ import annotations

import pytest

from api_poller.aws.status_checkpoint import StatusCheckpoint, job_status_checkpoints
from api_poller.core.keys import raw_payload_key, raw_prefix, status_checkpoint_key
from api_poller.operations.retention.raw_leftovers import LEFTOVER_KEY

BUCKET = "raw"
JOB = "manual__2026-12-02T10:00:00+00:00"


@pytest.fixture
def s3(aws):
    aws.s3.create_bucket(Bucket=BUCKET)
    return aws.s3


def test_a_task_instance_without_a_checkpoint_reads_none(s3) -> None:
    assert StatusCheckpoint(s3, BUCKET, JOB, "fetch_pages", 0).read() is None


def test_the_checkpoint_round_trips_per_task_instance(s3) -> None:
    records = {"page-000001": {"state": "Enqueued", "at": 1.5, "message_id": "m-1"}}
    StatusCheckpoint(s3, BUCKET, JOB, "fetch_pages", 3).write(records)
    assert StatusCheckpoint(s3, BUCKET, JOB, "fetch_pages", 3).read() == records
    assert StatusCheckpoint(s3, BUCKET, JOB, "fetch_pages", 2).read() is None
    assert StatusCheckpoint(s3, BUCKET, JOB, "process.consume_page_messages", -1).read() is None
    body = s3.get_object(Bucket=BUCKET, Key=status_checkpoint_key(JOB, "fetch_pages", 3))["Body"].read()
    assert b" " not in body  # compact


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"page-000001": {"at": 1}}'])
def test_a_damaged_checkpoint_is_ignored(s3, body: bytes) -> None:
    s3.put_object(Bucket=BUCKET, Key=status_checkpoint_key(JOB, "fetch_pages", 0), Body=body)
    assert StatusCheckpoint(s3, BUCKET, JOB, "fetch_pages", 0).read() is None


def test_a_failed_write_does_not_fail_the_task(aws) -> None:
    # No bucket: the PUT fails, the task goes on (the XCom was published).
    StatusCheckpoint(aws.s3, "missing-bucket", JOB, "fetch_pages", 0).write({})


def test_the_key_is_a_leftover_of_the_job_for_the_retention() -> None:
    key = status_checkpoint_key(JOB, "process.consume_page_messages", -1)
    match = LEFTOVER_KEY.match(key)
    assert match and match["job"] == "manual__2026-12-02T10_00_00_00_00" and match["kind"] == "status"
    assert not key.startswith(raw_prefix(JOB))  # a job's raw folder empties as its pages are processed
    with pytest.raises(ValueError):
        status_checkpoint_key(JOB, "a/b", 0)


def test_the_report_finds_every_checkpoint_of_its_job_by_task(s3) -> None:
    fetched = {"page-000000": {"state": "Enqueued", "at": 1.0}}
    consumed = {"page-000000": {"state": "SuccessfullyCompleted", "at": 2.0}}
    StatusCheckpoint(s3, BUCKET, JOB, "fetch_pages", 0).write(fetched)
    StatusCheckpoint(s3, BUCKET, JOB, "fetch_pages", 11).write(fetched)
    StatusCheckpoint(s3, BUCKET, JOB, "process.consume_page_messages", -1).write(consumed)
    StatusCheckpoint(s3, BUCKET, "another-job", "fetch_pages", 0).write(consumed)
    s3.put_object(Bucket=BUCKET, Key=raw_payload_key(JOB, "page-000000"), Body=b"{}")  # not a checkpoint
    found = job_status_checkpoints(s3, BUCKET, JOB)
    assert found == {"fetch_pages": [fetched, fetched], "process.consume_page_messages": [consumed]}
    assert job_status_checkpoints(s3, BUCKET, "a-job-without-any") == {}
