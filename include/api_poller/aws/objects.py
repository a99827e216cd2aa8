"""S3 object operations: reading an object that may not exist, which pages have an object,
batched deletes."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from api_poller.aws.clients import S3Client

log = logging.getLogger(__name__)

# What S3 (and moto) answer for an object that is not there: GET says NoSuchKey, HEAD a bare 404.
MISSING_OBJECT_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


def is_missing_object(error: ClientError) -> bool:
    """Whether ``error`` says the object does not exist (as opposed to any other failure)."""
    return error.response.get("Error", {}).get("Code") in MISSING_OBJECT_CODES


def read_object(s3_client: S3Client, bucket: str, key: str) -> bytes | None:
    """The object's bytes, or None when there is no such object (any other error raises)."""
    try:
        return s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        if is_missing_object(error):
            return None
        raise


def stored_page_ids(s3_client: S3Client, bucket: str, prefix: str) -> set[str]:
    """Page ids that have an object under ``prefix`` (one LIST call per 1000 objects)."""
    pages = set()
    for listing in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in listing.get("Contents", []):
            name = item["Key"][len(prefix) :]
            pages.add(name.rsplit(".", 1)[0])
    return pages


def delete_raw_pages(s3_client: S3Client, objects: list[tuple[str, str]]) -> None:
    """Delete processed raw pages, up to 1,000 per DeleteObjects call (one per bucket)."""
    by_bucket: dict[str, list[str]] = {}
    for bucket, key in objects:
        by_bucket.setdefault(bucket, []).append(key)
    for bucket, keys in by_bucket.items():
        for start in range(0, len(keys), 1000):
            response = s3_client.delete_objects(
                Bucket=bucket,
                Delete={"Objects": [{"Key": key} for key in keys[start : start + 1000]], "Quiet": True},
            )
            for error in response.get("Errors", []):
                # Left for the retention (issue 7) rather than failing a processed page.
                log.warning("could not delete raw page %s: %s", error.get("Key"), error.get("Message"))
