"""The output tests run against moto in process: a fresh processed bucket per test."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from api_poller.aws.clients import S3Client
from api_poller.core.keys import processed_key
from api_poller.core.planning import page_id
from tests.helpers import PROCESSED_BUCKET


@pytest.fixture(scope="session")
def s3_client() -> S3Client:
    return boto3.client("s3", region_name="us-east-1")


@pytest.fixture
def s3(s3_client: S3Client) -> Iterator[S3Client]:
    with mock_aws():
        s3_client.create_bucket(Bucket=PROCESSED_BUCKET)
        yield s3_client


def land_pages(s3: S3Client, job_id: str, pages: list[list[dict[str, Any]]], first_page: int = 0) -> None:
    """Write pages of records as the consumer does: one NDJSON file per page."""
    for number, records in enumerate(pages, start=first_page):
        body = "".join(
            json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n" for record in records
        )
        s3.put_object(Bucket=PROCESSED_BUCKET, Key=processed_key(job_id, page_id(number)), Body=body.encode())


# Records that exercise every rule: nested objects and arrays, nulls, fields absent from some
# records, a field null in some and absent from others, integers mixed with fractions, mixed
# types, an integer beyond int64, unicode, and a field that is always null.
TRICKY_RECORDS: list[dict[str, Any]] = [
    {
        "id": 1,
        "name": "Zoë",
        "price": 10,
        "tags": ["a"],
        "meta": {"k": 1},
        "ok": True,
        "none": None,
        "big": 1,
    },
    {"id": 2, "name": None, "price": 10.5, "tags": [], "meta": None, "ok": False, "none": None, "big": 2**70},
    {
        "id": 3,
        "name": "x",
        "price": 3,
        "tags": None,
        "meta": {"k": {"deep": [1, None]}},
        "none": None,
        "big": 3,
    },
    {"id": 4, "name": "y", "mixed": "text", "only_some": 1.5, "none": None, "big": 4, "ok": True},
    {"id": 5, "name": "z", "mixed": 7, "only_some": None, "none": None, "big": 5, "price": 0.25},
]
