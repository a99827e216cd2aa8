"""The watermark store on moto: read at plan time, advanced only forward, reset by deletion."""

from __future__ import annotations

import pytest

from api_poller.aws.watermark import advance_watermark, read_watermark
from api_poller.core.errors import FatalError
from api_poller.core.incremental import CursorValueError
from api_poller.core.keys import watermark_key

BUCKET = "processed"


@pytest.fixture
def s3(aws):
    aws.s3.create_bucket(Bucket=BUCKET)
    return aws.s3


def test_a_source_without_a_watermark_reads_none(s3) -> None:
    assert read_watermark(s3, BUCKET, "acme") is None


def test_the_watermark_advances_and_is_stored_under_the_sources_state(s3) -> None:
    advance_watermark(s3, BUCKET, "acme", "2025-01-01T00:10:00Z", job_id="run-1")
    stored = read_watermark(s3, BUCKET, "acme")
    assert stored is not None and stored.value == "2025-01-01T00:10:00Z" and stored.job_id == "run-1"
    assert watermark_key("acme") == "state/acme/watermark.json"
    assert s3.head_object(Bucket=BUCKET, Key="state/acme/watermark.json")


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("2025-01-01T00:10:00Z", "2025-01-01T00:09:59Z"),
        ("2025-01-01T00:10:00Z", "2025-01-01T01:09:00+01:00"),  # earlier, written with an offset
        (500, 499),
        (500, 500),
    ],
)
def test_the_watermark_never_moves_backwards(s3, first, second) -> None:
    advance_watermark(s3, BUCKET, "acme", first, job_id="run-1")
    kept = advance_watermark(s3, BUCKET, "acme", second, job_id="run-2")
    stored = read_watermark(s3, BUCKET, "acme")
    assert kept is not None and stored is not None
    assert stored.value == first and stored.job_id == "run-1"


def test_a_job_without_a_cursor_value_leaves_the_watermark(s3) -> None:
    advance_watermark(s3, BUCKET, "acme", 7, job_id="run-1")
    advance_watermark(s3, BUCKET, "acme", None, job_id="run-2")
    stored = read_watermark(s3, BUCKET, "acme")
    assert stored is not None and stored.value == 7


def test_a_value_of_another_kind_is_refused_not_stored(s3) -> None:
    advance_watermark(s3, BUCKET, "acme", 7, job_id="run-1")
    with pytest.raises(CursorValueError, match="different kinds"):
        advance_watermark(s3, BUCKET, "acme", "2025-01-01T00:00:00Z", job_id="run-2")
    stored = read_watermark(s3, BUCKET, "acme")
    assert stored is not None and stored.value == 7


def test_deleting_the_object_resets_the_source(s3) -> None:
    advance_watermark(s3, BUCKET, "acme", 7, job_id="run-1")
    s3.delete_object(Bucket=BUCKET, Key=watermark_key("acme"))
    assert read_watermark(s3, BUCKET, "acme") is None
    advance_watermark(s3, BUCKET, "acme", 3, job_id="run-2")
    stored = read_watermark(s3, BUCKET, "acme")
    assert stored is not None and stored.value == 3


def test_a_damaged_watermark_is_a_clear_error_saying_how_to_reset(s3) -> None:
    s3.put_object(Bucket=BUCKET, Key=watermark_key("acme"), Body=b"not json")
    with pytest.raises(FatalError, match="delete it to reset"):
        read_watermark(s3, BUCKET, "acme")


def test_sources_have_separate_watermarks(s3) -> None:
    advance_watermark(s3, BUCKET, "acme", 7, job_id="run-1")
    assert read_watermark(s3, BUCKET, "other") is None
