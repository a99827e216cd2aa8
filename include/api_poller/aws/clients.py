"""The boto3 client types the package passes around.

Type checkers see the generated stubs (``mypy-boto3-s3`` / ``mypy-boto3-sqs``, development
dependencies); at run time the names are plain aliases, so the stubs are never needed to run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient as SqsClient
else:
    S3Client = Any
    SqsClient = Any

__all__ = ["S3Client", "SqsClient"]
