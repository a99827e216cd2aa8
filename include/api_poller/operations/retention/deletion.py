"""Deleting many S3 objects: DeleteObjects, 1,000 keys per call; any refusal is an error."""

from __future__ import annotations

from collections.abc import Sequence

from api_poller.aws.clients import S3Client

S3_DELETE_BATCH = 1000


def delete_keys(s3_client: S3Client, bucket: str, keys: Sequence[str]) -> None:
    """Delete ``keys`` from ``bucket``; RuntimeError naming one refusal if any object stays."""
    errors = []
    for start in range(0, len(keys), S3_DELETE_BATCH):
        batch = keys[start : start + S3_DELETE_BATCH]
        answer = s3_client.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True}
        )
        errors.extend(answer.get("Errors", []))
    if errors:
        raise RuntimeError(f"{len(errors)} objects in {bucket} could not be deleted, e.g. {errors[0]}")
