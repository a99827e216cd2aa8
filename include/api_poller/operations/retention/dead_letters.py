"""Dead letters SQS is about to drop, reported (job, page, age) while they can still be redriven."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from api_poller.aws.clients import SqsClient
from api_poller.aws.messaging import change_visibility, message_job_id, message_page_id, parse_message
from api_poller.operations.retention.timestamps import as_utc

log = logging.getLogger(__name__)


def _dead_letter_page(message: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(job id, page id, raw key) of a dead letter: from its body, else its attributes."""
    try:
        pointer = parse_message(message)
        return pointer.job_id, pointer.page_id, pointer.key
    except ValueError:
        return message_job_id(message), message_page_id(message), None


def expiring_dead_letters(
    sqs_client: SqsClient,
    queue_url: str,
    *,
    now: datetime,
    margin: timedelta,
    max_messages: int = 1000,
    visibility_timeout: int = 30,
) -> dict[str, Any]:
    """Report the dead letters SQS drops within ``margin``, without deleting any.

    Reads the queue's ``MessageRetentionPeriod``, peeks at up to ``max_messages`` messages (each
    hidden for ``visibility_timeout`` seconds meanwhile) and makes them all visible again. A
    message's age counts from its ``SentTimestamp``: SQS keeps a standard queue's original enqueue
    time when it moves a message to the DLQ, and expires it from there.
    """
    now = as_utc(now)
    attributes = sqs_client.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["MessageRetentionPeriod", "ApproximateNumberOfMessages"]
    )["Attributes"]
    retention = timedelta(seconds=int(attributes["MessageRetentionPeriod"]))
    seen: list[Mapping[str, Any]] = []
    try:
        while len(seen) < max_messages:
            batch = sqs_client.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=min(10, max_messages - len(seen)),
                VisibilityTimeout=visibility_timeout,
                WaitTimeSeconds=1,
                AttributeNames=["SentTimestamp"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not batch:
                break
            seen.extend(batch)
    finally:
        change_visibility(sqs_client, queue_url, seen, 0)
    hour = timedelta(hours=1)
    expiring = []
    for message in seen:
        sent = datetime.fromtimestamp(int(message["Attributes"]["SentTimestamp"]) / 1000, UTC)
        age, left = now - sent, sent + retention - now
        if left > margin:
            continue
        job_id, page_id, raw_key = _dead_letter_page(message)
        expiring.append(
            {
                "job_id": job_id,
                "page_id": page_id,
                "message_id": message["MessageId"],
                "raw_key": raw_key,
                "sent_at": sent.isoformat(),
                "age_hours": round(age / hour, 1),
                "expires_in_hours": round(left / hour, 1),
            }
        )
    expiring.sort(key=lambda entry: entry["expires_in_hours"])
    for entry in expiring:
        log.warning(
            "dead letter of job %s, page %s (message %s) is %.1f h old; SQS drops it in %.1f h",
            entry["job_id"],
            entry["page_id"],
            entry["message_id"],
            entry["age_hours"],
            entry["expires_in_hours"],
        )
    log.info(
        "%d of %d dead letters expire within %s (queue retention %s)",
        len(expiring),
        len(seen),
        margin,
        retention,
    )
    return {
        "queue_url": queue_url,
        "retention_hours": round(retention / hour, 1),
        "margin_hours": round(margin / hour, 1),
        "messages": int(attributes.get("ApproximateNumberOfMessages", len(seen))),
        "peeked": len(seen),
        "complete": len(seen) < max_messages,
        "expiring": expiring,
    }
