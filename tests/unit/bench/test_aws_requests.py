"""The AWS request counter: every client created while counting, by operation, retries included."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError
from moto import mock_aws

from bench.harness.aws_requests import counting_aws_requests, operation_of, per_page


@pytest.fixture
def mocked_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield


def test_every_client_created_while_counting_is_counted_by_operation(mocked_aws: None) -> None:
    with counting_aws_requests() as counter:
        s3 = boto3.session.Session().client("s3")  # a session of its own, as each hook makes
        s3.create_bucket(Bucket="bucket")
        for key in "abc":
            s3.put_object(Bucket="bucket", Key=key, Body=b"x")
        s3.head_object(Bucket="bucket", Key="a")
        sqs = boto3.client("sqs")
        url = sqs.create_queue(QueueName="q")["QueueUrl"]
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "m"} for i in range(10)])

    assert counter.by_operation() == {
        "s3.CreateBucket": 1,
        "s3.HeadObject": 1,
        "s3.PutObject": 3,
        "sqs.CreateQueue": 1,
        "sqs.SendMessageBatch": 1,  # ten messages, one request
    }
    assert counter.total() == 7


def test_clients_from_before_or_after_counting_are_not_counted(mocked_aws: None) -> None:
    before = boto3.session.Session().client("s3")
    with counting_aws_requests() as counter:
        during = boto3.session.Session().client("s3")
        before.create_bucket(Bucket="bucket")
    during.put_object(Bucket="bucket", Key="k", Body=b"x")
    after = boto3.session.Session().client("s3")
    after.put_object(Bucket="bucket", Key="k", Body=b"x")

    assert counter.total() == 0


def test_requests_are_labelled_by_who_sent_them(mocked_aws: None) -> None:
    sender = ["plan"]
    with counting_aws_requests(lambda: sender[0]) as counter:
        s3 = boto3.session.Session().client("s3")
        s3.create_bucket(Bucket="bucket")
        sender[0] = "fetch"
        s3.put_object(Bucket="bucket", Key="k", Body=b"x")

    assert counter.by_label() == {"fetch": {"s3.PutObject": 1}, "plan": {"s3.CreateBucket": 1}}


def test_each_retry_is_a_request_of_its_own() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"
    config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=0.5)
    attempts = []
    with counting_aws_requests() as counter:
        session = boto3.session.Session()
        sqs = session.client("sqs", endpoint_url=endpoint, region_name="us-east-1", config=config)
        # botocore asks after every attempt whether to retry: one question per HTTP request.
        sqs.meta.events.register("needs-retry", lambda **_: attempts.append(1))
        with pytest.raises(EndpointConnectionError):
            sqs.list_queues()

    assert len(attempts) >= 3
    assert counter.by_operation() == {"sqs.ListQueues": len(attempts)}


def test_operation_names_and_requests_per_page() -> None:
    assert operation_of("before-send.s3.PutObject") == "s3.PutObject"
    assert per_page({"s3.PutObject": 200, "sqs.SendMessageBatch": 10}, 100) == {
        "s3.PutObject": 2.0,
        "sqs.SendMessageBatch": 0.1,
    }
