"""Send a job's dead letters back for processing, then let Airflow process them again.

The job API does both in one call, ``POST /api-poller/jobs/{job_id}/redrive`` (also a button on
the progress page); this module's command line calls it::

    API_POLLER_AIRFLOW_USERNAME=admin API_POLLER_AIRFLOW_PASSWORD=... \\
        python -m api_poller.operations.redrive --job-id <run id> --airflow-url http://127.0.0.1:8080

1. the job's messages move from the DLQ back to the processing queue (other jobs' dead letters
   stay where they are, visible), then
2. ``process.consume_page_messages`` and what follows it are cleared in that DAG run, so the
   consumer runs again, processes the redriven pages and republishes the statuses: their
   FailedToComplete becomes SuccessfullyCompleted once processing succeeds.

Fix what made the pages fail first (the processing code or the raw object), or they come back.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from api_poller.aws.clients import SqsClient
from api_poller.aws.messaging import (
    batches_of,
    change_visibility,
    delete_messages,
    message_job_id,
    message_page_id,
)
from api_poller.core.keys import safe_job_id

# Long enough that no letter reappears while one scan goes through the whole DLQ.
SCAN_VISIBILITY_SECONDS = 300
# Receives beyond the DLQ's approximate size before the scan stops anyway (the size is approximate).
EXTRA_RECEIVES = 10


@dataclass
class RedriveResult:
    """Page ids moved back to the processing queue, and those left in the DLQ with the reason."""

    moved: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def _approximate_size(sqs_client: SqsClient, queue_url: str) -> int:
    attributes = sqs_client.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes.get("ApproximateNumberOfMessages", 0)) + int(
        attributes.get("ApproximateNumberOfMessagesNotVisible", 0)
    )


def _send_back(
    sqs_client: SqsClient, queue_url: str, letters: Sequence[Mapping[str, Any]], result: RedriveResult
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """Send letters to the processing queue, 10 per call: (sent, refused) letters."""
    sent: list[Mapping[str, Any]] = []
    refused: list[Mapping[str, Any]] = []
    for batch in batches_of(letters):
        response = sqs_client.send_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "MessageBody": m["Body"], "MessageAttributes": m.get("MessageAttributes", {})}
                for i, m in enumerate(batch)
            ],
        )
        ok = {entry["Id"] for entry in response.get("Successful", [])}
        reasons = {
            entry["Id"]: f"{entry.get('Code', 'Failed')}: {entry.get('Message', 'no reason given')}"
            for entry in response.get("Failed", [])
        }
        for i, letter in enumerate(batch):
            page = message_page_id(letter) or letter["MessageId"]
            if str(i) in ok:
                sent.append(letter)
                result.moved.append(page)
            else:
                refused.append(letter)
                result.failed[page] = reasons.get(str(i), "SQS did not confirm the message")
    return sent, refused


def redrive_dead_letters(
    sqs_client: SqsClient, dead_letter_queue_url: str, queue_url: str, job_id: str
) -> RedriveResult:
    """Move the job's dead letters to the processing queue.

    The whole DLQ is scanned (bounded by its approximate size), so the job's letters behind
    other jobs' are found too. A letter leaves the DLQ only once SQS confirmed its copy in the
    processing queue; one SQS refused stays in the DLQ, visible, and is reported with the reason.
    Other jobs' letters are hidden only while the scan runs, then visible again at once.
    """
    wanted = safe_job_id(job_id)
    result = RedriveResult()
    held: list[Mapping[str, Any]] = []  # received and still in the DLQ: made visible again at the end
    seen: set[str] = set()
    try:
        for _ in range(_approximate_size(sqs_client, dead_letter_queue_url) // 10 + EXTRA_RECEIVES):
            batch = sqs_client.receive_message(
                QueueUrl=dead_letter_queue_url,
                MaxNumberOfMessages=10,
                MessageAttributeNames=["All"],
                VisibilityTimeout=SCAN_VISIBILITY_SECONDS,
                # Long polling asks every SQS server: an empty answer means nothing is left.
                WaitTimeSeconds=1,
            ).get("Messages", [])
            fresh = [m for m in batch if m["MessageId"] not in seen]
            if not fresh:
                break
            seen.update(m["MessageId"] for m in fresh)
            held += [m for m in fresh if message_job_id(m) != wanted]
            ours = [m for m in fresh if message_job_id(m) == wanted]
            if ours:
                sent, refused = _send_back(sqs_client, queue_url, ours, result)
                # Deleted from the DLQ only once the copy is in the processing queue: nothing is lost.
                delete_messages(sqs_client, dead_letter_queue_url, sent)
                held += refused
    finally:
        change_visibility(sqs_client, dead_letter_queue_url, held, 0)
    result.moved.sort()
    return result


# -- the command line: calls the job API's redrive route --------------------------------------------

USERNAME_VARIABLE = "API_POLLER_AIRFLOW_USERNAME"
PASSWORD_VARIABLE = "API_POLLER_AIRFLOW_PASSWORD"


class CredentialsError(ValueError):
    """The Airflow credentials are missing or unreadable."""


def read_credentials(credentials_file: Path | None, environ: dict[str, str]) -> tuple[str, str]:
    """Airflow user and password from a file (JSON ``{"username", "password"}`` or ``user:password``)
    or from ``API_POLLER_AIRFLOW_USERNAME``/``API_POLLER_AIRFLOW_PASSWORD``; never from the command
    line, where other users and the shell history would see the password."""
    if credentials_file is not None:
        try:
            text = credentials_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CredentialsError(f"cannot read {credentials_file}: {exc.strerror}") from None
        if text.startswith("{"):
            try:
                document = json.loads(text)
                username, password = document["username"], document["password"]
            except (ValueError, KeyError, TypeError):
                raise CredentialsError(
                    f'{credentials_file} must hold {{"username": ..., "password": ...}}'
                ) from None
        else:
            username, _, password = text.partition(":")
        if not (isinstance(username, str) and isinstance(password, str) and username and password):
            raise CredentialsError(f"{credentials_file} holds no user name and password")
        return username, password
    username, password = environ.get(USERNAME_VARIABLE, ""), environ.get(PASSWORD_VARIABLE, "")
    if not (username and password):
        raise CredentialsError(f"set {USERNAME_VARIABLE} and {PASSWORD_VARIABLE}, or pass --credentials-file")
    return username, password


def _post(url: str, body: dict[str, Any] | None, token: str | None = None) -> dict[str, Any]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        url, data=json.dumps(body or {}).encode(), headers=headers, method="POST"
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def main(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--job-id", required=True, help="the job id (DAG run id)")
    parser.add_argument("--airflow-url", required=True, help="the api-server, e.g. http://127.0.0.1:8080")
    parser.add_argument(
        "--credentials-file",
        type=Path,
        help=f'JSON {{"username", "password"}} or user:password '
        f"(default: ${USERNAME_VARIABLE} and ${PASSWORD_VARIABLE})",
    )
    args = parser.parse_args(argv)
    try:
        username, password = read_credentials(
            args.credentials_file, dict(os.environ if environ is None else environ)
        )
    except CredentialsError as exc:
        parser.error(str(exc))
    base = args.airflow_url.rstrip("/")
    try:
        token = _post(f"{base}/auth/token", {"username": username, "password": password})["access_token"]
        answer = _post(
            f"{base}/api-poller/jobs/{urllib.parse.quote(args.job_id, safe='')}/redrive", None, token
        )
    except urllib.error.HTTPError as exc:
        print(
            f"redrive failed: HTTP {exc.code}: {exc.read().decode(errors='replace')[:500]}", file=sys.stderr
        )
        return 1
    except urllib.error.URLError as exc:
        print(f"cannot reach Airflow at {base}: {exc.reason}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2))
    return 0 if not answer.get("Failed") else 2


if __name__ == "__main__":
    sys.exit(main())
