"""Dead-letter redrive: every letter of the job goes back to processing, or stays in the DLQ.

moto (in process) holds the queues; SQS refusing an entry of a SendMessageBatch (which moto never
does by itself) is injected through botocore's event hooks, the rest of the call is moto's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
from moto import mock_aws

from api_poller.aws.clients import SqsClient
from api_poller.aws.messaging import PagePointer, message_attributes, message_body, message_page_id
from api_poller.operations.redrive import redrive_dead_letters

JOB = "manual__2026-12-02T05:00:00+00:00"
OTHER_JOB = "manual__2026-12-01T05:00:00+00:00"


@dataclass
class Queues:
    sqs: SqsClient
    queue: str
    dead_letters: str


@pytest.fixture
def queues() -> Iterator[Queues]:
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        yield Queues(
            sqs,
            sqs.create_queue(QueueName="process")["QueueUrl"],
            sqs.create_queue(QueueName="process-dlq")["QueueUrl"],
        )


def dead_letter(queues: Queues, job_id: str, page: int) -> str:
    page_id = f"page-{page:06d}"
    pointer = PagePointer(job_id, page_id, "raw", f"jobs/x/raw/{page_id}.json", page * 10, 10)
    queues.sqs.send_message(
        QueueUrl=queues.dead_letters,
        MessageBody=message_body(pointer),
        MessageAttributes=message_attributes(pointer),
    )
    return page_id


def visible_pages(sqs: SqsClient, queue_url: str) -> list[str]:
    """The page ids of every message visible in the queue (left invisible for a moment by the read)."""
    pages: list[str] = []
    while batch := sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], VisibilityTimeout=30
    ).get("Messages", []):
        pages += [message_page_id(message) or json.loads(message["Body"])["taskId"] for message in batch]
    return sorted(pages)


def refuse_entries_for(sqs: SqsClient, page_id: str) -> None:
    """SendMessageBatch reports ``page_id``'s entry as Failed (and does not send it), as SQS may."""
    refused: list[str] = []

    def drop(params: dict, **_: object) -> None:
        keep = []
        for entry in params["Entries"]:
            if entry["MessageAttributes"]["taskId"]["StringValue"] == page_id:
                refused.append(entry["Id"])
            else:
                keep.append(entry)
        params["Entries"] = keep

    def report(parsed: dict, **_: object) -> None:
        failed = [
            {"Id": entry_id, "SenderFault": False, "Code": "InternalError", "Message": "try again"}
            for entry_id in refused
        ]
        parsed["Failed"] = [*parsed.get("Failed", []), *failed]
        refused.clear()

    sqs.meta.events.register("before-parameter-build.sqs.SendMessageBatch", drop)
    sqs.meta.events.register("after-call.sqs.SendMessageBatch", report)


def test_the_jobs_dead_letters_go_back_to_the_queue_and_no_one_elses(queues: Queues):
    ours = [dead_letter(queues, JOB, page) for page in range(3)]
    theirs = [dead_letter(queues, OTHER_JOB, page) for page in range(2)]
    result = redrive_dead_letters(queues.sqs, queues.dead_letters, queues.queue, JOB)
    assert visible_pages(queues.sqs, queues.queue) == ours
    assert visible_pages(queues.sqs, queues.dead_letters) == theirs  # visible again at once
    assert result.moved == ours and result.failed == {}


def test_a_letter_sqs_refuses_to_send_stays_in_the_dead_letter_queue_and_is_reported(queues: Queues):
    ours = [dead_letter(queues, JOB, page) for page in range(3)]
    refuse_entries_for(queues.sqs, "page-000001")
    result = redrive_dead_letters(queues.sqs, queues.dead_letters, queues.queue, JOB)
    # Before the fix the refused letter was deleted from the DLQ anyway: that page was lost.
    assert visible_pages(queues.sqs, queues.dead_letters) == ["page-000001"]
    assert visible_pages(queues.sqs, queues.queue) == [ours[0], ours[2]]
    assert result.moved == [ours[0], ours[2]]
    assert result.failed == {"page-000001": "InternalError: try again"}


def test_letters_behind_a_full_batch_of_other_jobs_letters_are_moved_too(queues: Queues):
    theirs = [dead_letter(queues, OTHER_JOB, page) for page in range(25)]
    ours = [dead_letter(queues, JOB, page) for page in range(25, 28)]
    result = redrive_dead_letters(queues.sqs, queues.dead_letters, queues.queue, JOB)
    # Before the fix the scan stopped at the first batch holding only the other job's letters.
    assert visible_pages(queues.sqs, queues.queue) == ours
    assert visible_pages(queues.sqs, queues.dead_letters) == theirs
    assert result.moved == ours


def test_an_empty_dead_letter_queue_moves_nothing(queues: Queues):
    result = redrive_dead_letters(queues.sqs, queues.dead_letters, queues.queue, JOB)
    assert (result.moved, result.failed) == ([], {})
    assert visible_pages(queues.sqs, queues.queue) == []
