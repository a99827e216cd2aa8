"""The pipeline steps' unit tests run against moto in process: a fresh S3/SQS per test.

boto3 clients are created once (creating one costs about a second of CPU here); moto intercepts
their calls while a test's ``mock_aws`` is active, and forgets every bucket and queue after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
from moto import mock_aws

from api_poller.aws.clients import S3Client, SqsClient
from api_poller.aws.resources import ensure_resources
from api_poller.settings import PollerSettings

SETTINGS = PollerSettings()


@dataclass
class MotoStack:
    """The product's buckets and queues (with the DLQ redrive policy), in moto."""

    s3: S3Client
    sqs: SqsClient
    queue_url: str
    dead_letter_queue_url: str

    def depth(self, queue_url: str) -> dict[str, int]:
        """Messages waiting (visible) and received but not deleted (in flight)."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
        return {"visible": int(attributes[names[0]]), "in_flight": int(attributes[names[1]])}

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        listing = self.s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for item in listing.get("Contents", []))


@pytest.fixture(scope="session")
def boto_clients() -> tuple[S3Client, SqsClient]:
    return boto3.client("s3", region_name="us-east-1"), boto3.client("sqs", region_name="us-east-1")


@pytest.fixture
def stack(boto_clients: tuple[S3Client, SqsClient]) -> Iterator[MotoStack]:
    s3, sqs = boto_clients
    with mock_aws():
        urls = ensure_resources(s3, sqs, SETTINGS, create=True)
        yield MotoStack(s3, sqs, urls["queue_url"], urls["dead_letter_queue_url"])
