"""A source's page carries how to read it in its SQS message (seed messages unchanged and still
parsed), and processing follows it: records path, optional primary key, highest cursor value."""

from __future__ import annotations

import json

import pytest

from api_poller.aws.messaging import PagePointer, message_body, parse_message
from api_poller.pipeline.process import (
    PageProcessingError,
    process_page,
    read_page_records,
    records_to_ndjson,
)

SEED_BODY = {"jobId": "j", "taskId": "page-000001", "bucket": "raw", "key": "k", "startAt": 0, "count": 2}


def test_a_seed_message_is_unchanged_and_an_old_message_still_parses() -> None:
    pointer = PagePointer("j", "page-000001", "raw", "k", 0, 2)
    assert json.loads(message_body(pointer)) == SEED_BODY
    parsed = parse_message({"Body": json.dumps(SEED_BODY)})
    assert parsed == pointer
    assert (parsed.records_path, parsed.primary_key, parsed.cursor_field) == ("payload", "id", None)


def test_a_source_message_carries_its_records_path_key_and_cursor_field() -> None:
    pointer = PagePointer("j", "page-000001", "raw", "k", 0, 2, "$.data.items", None, "updated_at")
    body = json.loads(message_body(pointer))
    assert body["recordsPath"] == "$.data.items" and body["primaryKey"] is None
    assert parse_message({"Body": message_body(pointer)}) == pointer
    assert PagePointer.from_dict(pointer.to_dict()) == pointer


def test_a_message_with_a_malformed_primary_key_is_not_one_of_ours() -> None:
    with pytest.raises(ValueError, match="primaryKey"):
        parse_message({"Body": json.dumps({**SEED_BODY, "primaryKey": 3})})


def test_records_at_a_top_level_array_without_a_key_are_counted_with_their_highest_cursor() -> None:
    document = [
        {"name": "a", "updated_at": "2025-01-01T00:05:00Z"},
        {"name": "b", "updated_at": "2025-01-01T00:07:00Z"},
    ]
    page = read_page_records(
        document, "page-000001", records_path="$", primary_key=None, cursor_field="updated_at"
    )
    assert page.count == 2 and page.max_cursor == "2025-01-01T00:07:00Z"
    assert [json.loads(line)["name"] for line in page.body.decode().splitlines()] == ["a", "b"]


def test_a_declared_key_is_required_and_a_missing_records_path_is_named() -> None:
    with pytest.raises(PageProcessingError, match="record 1 has no 'sku'"):
        read_page_records({"items": [{"sku": 1}, {}]}, "p", records_path="items", primary_key="sku")
    with pytest.raises(PageProcessingError, match=r"'data\.items' matches nothing"):
        read_page_records({"items": []}, "p", records_path="data.items", primary_key=None)


def test_the_seed_protocol_keeps_its_messages() -> None:
    with pytest.raises(PageProcessingError, match="raw payload has no 'payload' list"):
        records_to_ndjson({"items": []}, "p")
    assert records_to_ndjson({"payload": [{"id": 1}]}, "p") == (b'{"id":1}\n', 1)


def test_the_highest_cursor_value_is_kept_with_the_output_and_found_again_on_a_repeat(aws) -> None:
    aws.s3.create_bucket(Bucket="raw")
    aws.s3.create_bucket(Bucket="processed")
    aws.s3.put_object(Bucket="raw", Key="k", Body=json.dumps({"items": [{"id": 9}, {"id": 12}, {"id": 3}]}))
    pointer = PagePointer("j", "page-000001", "raw", "k", 0, 3, "items", "id", "id")
    first = process_page(aws.s3, pointer, "processed")
    assert first.records == 3 and first.max_cursor == 12
    aws.s3.delete_object(Bucket="raw", Key="k")  # consumed; SQS delivers the message again
    again = process_page(aws.s3, pointer, "processed")
    assert again.records == 3 and again.max_cursor == 12 and again.raw is None


@pytest.mark.parametrize(
    "raw",
    [
        # Standard JSON (written by msgspec): text, escapes, non-ASCII, floats, a 70-bit integer.
        '{"payload": [{"id": 1, "t": "é \\"q\\" \\n \\u2028 😀", "f": 1e-7, "g": 2.5e20, "n": null},'
        ' {"id": 1180591620717411303424, "l": [true, false, {}], "e": ""}]}',
        # NaN and Infinity (json.loads accepts them; written back by json.dumps, never as null).
        '{"payload": [{"id": 1, "x": NaN}, {"id": 2, "x": -Infinity, "y": 1e400}]}',
    ],
)
def test_processing_writes_every_record_value_as_it_was_served(aws, raw: str) -> None:
    aws.s3.create_bucket(Bucket="raw")
    aws.s3.create_bucket(Bucket="processed")
    aws.s3.put_object(Bucket="raw", Key="k", Body=raw.encode())
    done = process_page(aws.s3, PagePointer("j", "page-000001", "raw", "k", 0, 2), "processed")
    body = aws.s3.get_object(Bucket="processed", Key=done.key)["Body"].read().decode()
    lines = body.split("\n")[:-1]  # (str.splitlines would also split at the record's U+2028)
    assert body.endswith("\n") and len(lines) == 2 == done.records
    assert repr([json.loads(line) for line in lines]) == repr(json.loads(raw)["payload"])
    assert "é" in body or "NaN" in body  # non-ASCII stays unescaped; NaN stays NaN
