"""Create (idempotently) or look up the bucket and queues a job needs."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, cast

from botocore.exceptions import ClientError

from api_poller.settings import PollerSettings

if TYPE_CHECKING:
    from mypy_boto3_s3.literals import BucketLocationConstraintType

    from api_poller.aws.clients import S3Client, SqsClient


def ensure_bucket(s3_client: S3Client, bucket: str, create: bool) -> None:
    try:
        s3_client.head_bucket(Bucket=bucket)
        return
    except ClientError as error:
        if not create or error.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
            raise RuntimeError(f"bucket {bucket!r} is not usable: {error}") from error
    region = s3_client.meta.region_name
    if region in (None, "us-east-1"):
        s3_client.create_bucket(Bucket=bucket)
    else:
        # The client's own region; the stubs' Literal lists only the regions known when generated.
        location = cast("BucketLocationConstraintType", region)
        s3_client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": location})


def queue_url(sqs_client: SqsClient, name: str) -> str:
    try:
        return sqs_client.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as error:
        raise RuntimeError(f"queue {name!r} is not usable: {error}") from error


def ensure_queues(sqs_client: SqsClient, settings: PollerSettings, create: bool) -> dict[str, str]:
    """The processing queue and its DLQ, with the seed's redrive policy (maxReceiveCount 3)."""
    if not create:
        return {
            "queue_url": queue_url(sqs_client, settings.queue_name),
            "dead_letter_queue_url": queue_url(sqs_client, settings.dead_letter_queue_name),
        }
    dlq_url = sqs_client.create_queue(
        QueueName=settings.dead_letter_queue_name,
        Attributes={"MessageRetentionPeriod": str(14 * 24 * 3600)},
    )["QueueUrl"]
    dlq_arn = sqs_client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(settings.max_receive_count)})
    url = sqs_client.create_queue(QueueName=settings.queue_name)["QueueUrl"]
    # Set the policy separately: create_queue refuses differing attributes on an existing queue.
    sqs_client.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": redrive})
    return {"queue_url": url, "dead_letter_queue_url": dlq_url}


def ensure_resources(
    s3_client: S3Client, sqs_client: SqsClient, settings: PollerSettings, create: bool
) -> dict[str, str]:
    """Buckets and queues exist afterwards (created if ``create``), and the queue URLs are known."""
    for bucket in (settings.raw_bucket, settings.processed_bucket):
        ensure_bucket(s3_client, bucket, create)
    return ensure_queues(sqs_client, settings, create)
