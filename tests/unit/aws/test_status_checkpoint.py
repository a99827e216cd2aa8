"""A task instance's status checkpoint on moto: written compactly (a summary, and a chunk of records
per changed chunk), read back, absent or damaged reads as none, and it lives where the retention
removes a job's leftovers."""

from __future__ import annotations

import json

import pytest

from api_poller.aws.status_checkpoint import StatusCheckpoint, job_checkpoints
from api_poller.core.keys import (
    raw_payload_key,
    raw_prefix,
    status_checkpoint_chunk_key,
    status_checkpoint_key,
)
from api_poller.core.lifecycle import PageState, Publication, StatusRecorder
from api_poller.core.status_document import CHUNK_PAGES
from api_poller.operations.retention.raw_leftovers import LEFTOVER_KEY

BUCKET = "raw"
JOB = "manual__2026-12-02T10:00:00+00:00"


@pytest.fixture
def s3(aws):
    aws.s3.create_bucket(Bucket=BUCKET)
    return aws.s3


def publications(records: dict[str, dict]) -> list[Publication]:
    """What a task instance whose records are ``records`` publishes at its first flush."""
    out: list[Publication] = []
    StatusRecorder(out.append, interval=0, floor=records).flush()
    return out


def write(s3, task: str, index: int, records: dict[str, dict], job: str = JOB) -> None:
    checkpoint = StatusCheckpoint(s3, BUCKET, job, task, index)
    for publication in publications(records):
        checkpoint.write(publication)


def test_a_task_instance_without_a_checkpoint_reads_none(s3) -> None:
    checkpoint = StatusCheckpoint(s3, BUCKET, JOB, "fetch_pages", 0)
    assert checkpoint.read_records() is None and checkpoint.read_summary() is None


def test_the_checkpoint_round_trips_per_task_instance(s3) -> None:
    records = {
        "page-000001": {"state": "Enqueued", "at": 1.5, "message_id": "m-1"},
        f"page-{CHUNK_PAGES * 3 + 1:06d}": {"state": "FailedToComplete", "at": 2.0, "reason": "HTTP 404"},
    }
    write(s3, "fetch_pages", 3, records)
    checkpoint = StatusCheckpoint(s3, BUCKET, JOB, "fetch_pages", 3)
    assert checkpoint.read_records() == records
    summary = checkpoint.read_summary()
    assert summary is not None and summary.chunks == [0, 3]
    assert summary.failed == {f"page-{CHUNK_PAGES * 3 + 1:06d}": ["HTTP 404", 2.0]}
    assert checkpoint.read_chunks([3]) == {
        f"page-{CHUNK_PAGES * 3 + 1:06d}": records[f"page-{CHUNK_PAGES * 3 + 1:06d}"]
    }
    assert StatusCheckpoint(s3, BUCKET, JOB, "fetch_pages", 2).read_records() is None
    assert StatusCheckpoint(s3, BUCKET, JOB, "process.consume_page_messages", -1).read_records() is None
    body = s3.get_object(Bucket=BUCKET, Key=status_checkpoint_chunk_key(JOB, "fetch_pages", 3, 0))[
        "Body"
    ].read()
    assert b" " not in body  # compact


def test_a_later_publication_rewrites_only_the_chunks_that_changed(s3) -> None:
    checkpoint = StatusCheckpoint(s3, BUCKET, JOB, "fetch_pages", 0)
    out: list[Publication] = []
    recorder = StatusRecorder(out.append, interval=60, checkpoint=checkpoint.write)
    for number in range(3 * CHUNK_PAGES):
        recorder.mark(f"page-{number:06d}", PageState.ENQUEUED)
    recorder.flush()
    recorder.mark("page-000001", PageState.SUCCESSFULLY_COMPLETED, records=5)
    recorder.flush()
    assert [list(publication.chunks) for publication in out] == [[0], [0, 1, 2], [0]]
    records = checkpoint.read_records()
    assert records is not None and len(records) == 3 * CHUNK_PAGES
    assert records["page-000001"]["state"] == "SuccessfullyCompleted"


def test_a_checkpoint_of_the_earlier_format_is_read_as_its_records(s3) -> None:
    legacy = {"page-000001": {"state": "Enqueued", "at": 1.5}}
    s3.put_object(Bucket=BUCKET, Key=status_checkpoint_key(JOB, "fetch_pages", 0), Body=json.dumps(legacy))
    assert StatusCheckpoint(s3, BUCKET, JOB, "fetch_pages", 0).read_records() == legacy


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"v": 2, "pages": {"Started": "%%"}}'])
def test_a_damaged_checkpoint_is_ignored(s3, body: bytes) -> None:
    s3.put_object(Bucket=BUCKET, Key=status_checkpoint_key(JOB, "fetch_pages", 0), Body=body)
    assert StatusCheckpoint(s3, BUCKET, JOB, "fetch_pages", 0).read_records() is None


def test_a_damaged_chunk_is_skipped(s3) -> None:
    write(s3, "fetch_pages", 0, {"page-000001": {"state": "Enqueued", "at": 1.0}})
    s3.put_object(Bucket=BUCKET, Key=status_checkpoint_chunk_key(JOB, "fetch_pages", 0, 0), Body=b'{"x": 1}')
    assert StatusCheckpoint(s3, BUCKET, JOB, "fetch_pages", 0).read_records() == {}


def test_a_failed_write_does_not_fail_the_task(aws) -> None:
    # No bucket: the PUT fails, the task goes on (the XCom was published).
    [publication] = publications({"page-000001": {"state": "Enqueued", "at": 1.0}})
    StatusCheckpoint(aws.s3, "missing-bucket", JOB, "fetch_pages", 0).write(publication)


def test_the_keys_are_leftovers_of_the_job_for_the_retention() -> None:
    for key in (
        status_checkpoint_key(JOB, "process.consume_page_messages", -1),
        status_checkpoint_chunk_key(JOB, "process.consume_page_messages", -1, 12),
    ):
        match = LEFTOVER_KEY.match(key)
        assert match and match["job"] == "manual__2026-12-02T10_00_00_00_00" and match["kind"] == "status"
        assert not key.startswith(raw_prefix(JOB))  # a job's raw folder empties as its pages are processed
    with pytest.raises(ValueError):
        status_checkpoint_key(JOB, "a/b", 0)
    with pytest.raises(ValueError):
        status_checkpoint_chunk_key(JOB, "a/b", 0, 1)


def test_the_report_finds_every_checkpoint_of_its_job_by_task(s3) -> None:
    fetched = {"page-000000": {"state": "Enqueued", "at": 1.0}}
    consumed = {"page-000000": {"state": "SuccessfullyCompleted", "at": 2.0}}
    write(s3, "fetch_pages", 0, fetched)
    write(s3, "fetch_pages", 11, fetched)
    write(s3, "process.consume_page_messages", -1, consumed)
    write(s3, "fetch_pages", 0, consumed, job="another-job")
    s3.put_object(Bucket=BUCKET, Key=raw_payload_key(JOB, "page-000000"), Body=b"{}")  # not a checkpoint
    found = {
        task: [checkpoint.read_records() for checkpoint in checkpoints]
        for task, checkpoints in job_checkpoints(s3, BUCKET, JOB).items()
    }
    assert found == {"fetch_pages": [fetched, fetched], "process.consume_page_messages": [consumed]}
    assert job_checkpoints(s3, BUCKET, "a-job-without-any") == {}


def test_a_checkpoint_is_read_a_chunk_at_a_time_for_a_whole_job_merge(s3) -> None:
    records = {f"page-{n:06d}": {"state": "Enqueued", "at": float(n)} for n in range(0, 3 * CHUNK_PAGES, 7)}
    write(s3, "fetch_pages", 2, records)
    [checkpoint] = job_checkpoints(s3, BUCKET, JOB)["fetch_pages"]
    chunks = list(checkpoint.iter_records())
    assert len(chunks) == 3 and all(len(chunk) <= CHUNK_PAGES for chunk in chunks)
    assert {page: record for chunk in chunks for page, record in chunk.items()} == records
    assert list(StatusCheckpoint(s3, BUCKET, JOB, "fetch_pages", 3).iter_records()) == []  # none written
