"""Dead letters close to the queue's retention are reported, and left where they were (moto)."""

from __future__ import annotations

from api_poller.operations.retention.dead_letters import expiring_dead_letters
from tests.helpers import DEAD_LETTER_QUEUE, AwsClients
from tests.unit.operations.retention.seeding import (
    DAY,
    boundary_between_writes,
    send_dead_letter,
    visible_messages,
)


def test_dead_letters_close_to_the_queue_retention_are_reported_and_left_visible(aws: AwsClients) -> None:
    url = aws.sqs.create_queue(QueueName=DEAD_LETTER_QUEUE, Attributes={"MessageRetentionPeriod": "345600"})[
        "QueueUrl"
    ]
    send_dead_letter(aws.sqs, url, "manual__old", "page-000003")
    boundary = boundary_between_writes()
    send_dead_letter(aws.sqs, url, "manual__new", "page-000007")

    # Four days' retention, a margin of one day: as of boundary + 3 days only the first is due.
    report = expiring_dead_letters(aws.sqs, url, now=boundary + 3 * DAY, margin=DAY)

    assert (report["retention_hours"], report["margin_hours"], report["peeked"]) == (96.0, 24.0, 2)
    [entry] = report["expiring"]
    assert (entry["job_id"], entry["page_id"]) == ("manual__old", "page-000003")
    assert entry["raw_key"] == "jobs/manual__old/raw/page-000003.json"
    assert 72.0 <= entry["age_hours"] <= 72.1 and 23.9 <= entry["expires_in_hours"] <= 24.0
    assert visible_messages(aws.sqs, url) == 2  # nothing deleted, nothing left hidden
