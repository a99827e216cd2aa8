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
from api_poller.operations.redrive import (
    PASSWORD_VARIABLE,
    USERNAME_VARIABLE,
    CredentialsError,
    main,
    read_credentials,
    redrive_dead_letters,
)

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


# -- the command line's credentials -----------------------------------------------------------------


def test_credentials_come_from_the_environment():
    environ = {USERNAME_VARIABLE: "ops", PASSWORD_VARIABLE: "s3cret"}
    assert read_credentials(None, environ) == ("ops", "s3cret")


@pytest.mark.parametrize("content", ['{"username": "ops", "password": "s3:cret"}', "ops:s3:cret\n"])
def test_credentials_come_from_a_json_or_user_password_file(tmp_path, content):
    path = tmp_path / "airflow-credentials"
    path.write_text(content)
    assert read_credentials(path, {}) == ("ops", "s3:cret")


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read"), ('{"username": "ops"}', "must hold"), ("ops", "holds no user name and password")],
)
def test_unusable_credentials_files_are_refused_clearly(tmp_path, content, message):
    path = tmp_path / "airflow-credentials"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CredentialsError, match=message):
        read_credentials(path, {})


def test_the_command_line_has_no_password_option_and_says_where_credentials_go(capsys):
    with pytest.raises(SystemExit):
        main(["--job-id", "j", "--airflow-url", "http://127.0.0.1:9", "--password", "x"], {})
    assert "unrecognized arguments: --password" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--job-id", "j", "--airflow-url", "http://127.0.0.1:9"], {})
    advice = f"set {USERNAME_VARIABLE} and {PASSWORD_VARIABLE}, or pass --credentials-file"
    assert advice in capsys.readouterr().err
