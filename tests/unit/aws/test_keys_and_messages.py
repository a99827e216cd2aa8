"""Unit tests of api_poller.core.keys (S3 key layout) and api_poller.aws.messaging (SQS message format)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from api_poller.aws.messaging import (
    PagePointer,
    batches_of,
    message_attributes,
    message_body,
    message_job_id,
    parse_message,
)
from api_poller.core.keys import processed_key, processed_prefix, raw_payload_key, s3_uri, safe_job_id

SAFE = re.compile(r"[A-Za-z0-9._=-]+")
RUN_IDS = [
    "manual__2026-11-28T01:00:00+00:00",
    "scheduled__2026-11-28T00:00:00+00:00",
    "asset_triggered__2026-11-28T01:02:03.456789+00:00",
    "backfill__2026-01-01T00:00:00+00:00",
    "my run / with spaces & ünïcode",
    "a" * 250,
]

# --- safe_job_id ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("job_id", "expected"),
    [
        ("manual__2026-11-28T01:00:00+00:00", "manual__2026-11-28T01_00_00_00_00"),
        ("scheduled__2026-11-28T00:00:00+00:00", "scheduled__2026-11-28T00_00_00_00_00"),
        ("job-1.v2=ok", "job-1.v2=ok"),
        ("a b  c", "a_b_c"),
        ("a/:+b", "a_b"),
    ],
)
def test_safe_job_id_replaces_each_unsafe_run_with_one_underscore(job_id: str, expected: str) -> None:
    assert safe_job_id(job_id) == expected


@pytest.mark.parametrize("job_id", RUN_IDS)
def test_safe_job_id_keeps_only_safe_characters(job_id: str) -> None:
    assert SAFE.fullmatch(safe_job_id(job_id))


@pytest.mark.parametrize("job_id", RUN_IDS)
def test_safe_job_id_is_deterministic_and_idempotent(job_id: str) -> None:
    assert safe_job_id(job_id) == safe_job_id(job_id)
    assert safe_job_id(safe_job_id(job_id)) == safe_job_id(job_id)


@pytest.mark.parametrize("job_id", ["../../etc", "../..", "a/../../b", "./x", "..%2F..%2Fetc", "/abs/path"])
def test_safe_job_id_cannot_escape_its_prefix(job_id: str) -> None:
    try:
        safe = safe_job_id(job_id)
    except ValueError:
        return  # refusing is as safe as cleaning
    assert "/" not in safe and safe not in (".", "..") and not safe.startswith(".")
    key = raw_payload_key(job_id, "page-000000")
    assert key.startswith("jobs/") and key.split("/")[1] == safe
    assert key.count("/") == 3


def test_safe_job_id_dot_dot_slash_keeps_only_the_name() -> None:
    assert safe_job_id("../../etc") == "etc"


@pytest.mark.parametrize("job_id", ["", "..", "/", "___", "./.", "::++"])
def test_safe_job_id_rejects_empty_or_unusable(job_id: str) -> None:
    with pytest.raises(ValueError, match="job id"):
        safe_job_id(job_id)


@pytest.mark.parametrize("length", [200, 201, 250, 5000])
def test_safe_job_id_length_is_capped(length: int) -> None:
    assert len(safe_job_id("x" * length)) == 200


def test_safe_job_id_short_ids_are_not_padded() -> None:
    assert safe_job_id("abc") == "abc"


# --- S3 key layout ----------------------------------------------------------------------------


def test_raw_payload_key_layout() -> None:
    key = raw_payload_key("manual__2026-11-28T01:00:00+00:00", "page-000007")
    assert key == "jobs/manual__2026-11-28T01_00_00_00_00/raw/page-000007.json"


def test_processed_key_layout() -> None:
    key = processed_key("manual__2026-11-28T01:00:00+00:00", "page-000007")
    assert key == "jobs/manual__2026-11-28T01_00_00_00_00/records/page-000007.ndjson"


def test_processed_key_is_under_processed_prefix() -> None:
    job = "scheduled__2026-11-28T00:00:00+00:00"
    assert processed_key(job, "page-000000").startswith(processed_prefix(job))
    assert processed_prefix(job) == "jobs/scheduled__2026-11-28T00_00_00_00_00/records/"


def test_keys_of_different_jobs_do_not_overlap() -> None:
    a, b = "manual__2026-11-28T01:00:00+00:00", "manual__2026-11-28T02:00:00+00:00"
    assert raw_payload_key(a, "page-000000") != raw_payload_key(b, "page-000000")
    assert not processed_prefix(a).startswith(processed_prefix(b))


def test_s3_uri() -> None:
    assert s3_uri("bucket", "jobs/x/records/") == "s3://bucket/jobs/x/records/"


# --- SQS messages -----------------------------------------------------------------------------

POINTER = PagePointer(
    job_id="manual__2026-11-28T01:00:00+00:00",
    page_id="page-000003",
    bucket="api-poller-raw",
    key="jobs/manual__2026-11-28T01_00_00_00_00/raw/page-000003.json",
    start_at=300,
    count=100,
)


def as_received(pointer: PagePointer) -> dict[str, Any]:
    """The shape boto3's receive_message gives for a message sent with these body and attributes."""
    return {
        "MessageId": "m-1",
        "ReceiptHandle": "r-1",
        "Body": message_body(pointer),
        "MessageAttributes": message_attributes(pointer),
    }


def test_message_body_uses_seed_field_names_and_original_job_id() -> None:
    assert json.loads(message_body(POINTER)) == {
        "jobId": "manual__2026-11-28T01:00:00+00:00",
        "taskId": "page-000003",
        "bucket": "api-poller-raw",
        "key": "jobs/manual__2026-11-28T01_00_00_00_00/raw/page-000003.json",
        "startAt": 300,
        "count": 100,
    }


def test_message_body_is_deterministic() -> None:
    assert message_body(POINTER) == message_body(PagePointer(**POINTER.to_dict()))


def test_message_attributes_carry_safe_job_id_and_page_id() -> None:
    assert message_attributes(POINTER) == {
        "jobId": {"DataType": "String", "StringValue": "manual__2026-11-28T01_00_00_00_00"},
        "taskId": {"DataType": "String", "StringValue": "page-000003"},
    }


def test_message_job_id_reads_safe_attribute() -> None:
    assert message_job_id(as_received(POINTER)) == safe_job_id(POINTER.job_id)


@pytest.mark.parametrize("message", [{}, {"MessageAttributes": {}}, {"MessageAttributes": {"taskId": {}}}])
def test_message_job_id_is_none_without_attribute(message: dict[str, Any]) -> None:
    assert message_job_id(message) is None


@pytest.mark.parametrize(
    "pointer",
    [
        POINTER,
        PagePointer("scheduled__2026-11-28T00:00:00+00:00", "page-000000", "b", "k", 0, 1),
        PagePointer("plain", "page-123456", "bucket.with.dots", "jobs/plain/raw/page-123456.json", 10**9, 7),
    ],
)
def test_parse_message_round_trips_pointer(pointer: PagePointer) -> None:
    assert parse_message(as_received(pointer)) == pointer


def test_page_pointer_round_trips_through_dict() -> None:
    assert PagePointer.from_dict(json.loads(json.dumps(POINTER.to_dict()))) == POINTER


def _body_without(field: str) -> str:
    body = json.loads(message_body(POINTER))
    del body[field]
    return json.dumps(body)


@pytest.mark.parametrize(
    "message",
    [
        {},
        {"Body": "not json"},
        {"Body": ""},
        {"Body": "[1, 2]"},
        {"Body": '"a string"'},
        {"Body": "null"},
        {"Body": "42"},
        {"Body": json.dumps({"hello": "world"})},
        {"Body": _body_without("jobId")},
        {"Body": _body_without("taskId")},
        {"Body": _body_without("count")},
        {"Body": message_body(POINTER).replace('"startAt": 300', '"startAt": "abc"')},
        {"Body": message_body(POINTER).replace('"count": 100', '"count": null')},
        {"Body": {"jobId": "x"}},
    ],
    ids=[
        "no-body",
        "not-json",
        "empty",
        "list",
        "string",
        "null",
        "number",
        "foreign-object",
        "no-jobId",
        "no-taskId",
        "no-count",
        "bad-startAt",
        "null-count",
        "body-not-text",
    ],
)
def test_parse_message_rejects_foreign_bodies(message: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="not a page message"):
        parse_message(message)


# --- batches_of -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "sizes"),
    [(0, []), (1, [1]), (9, [9]), (10, [10]), (11, [10, 1]), (25, [10, 10, 5]), (30, [10, 10, 10])],
)
def test_batches_of_groups_by_ten(count: int, sizes: list[int]) -> None:
    items = list(range(count))
    batches = batches_of(items)
    assert [len(batch) for batch in batches] == sizes
    assert [item for batch in batches for item in batch] == items


def test_batches_of_custom_size() -> None:
    assert batches_of([1, 2, 3, 4, 5], size=2) == [[1, 2], [3, 4], [5]]
