"""PageAnnouncer and send_message_batch against moto's SQS: pages are enqueued while the fetch
goes on, 10 per call, and a page that cannot be enqueued is reported, never dropped."""

from __future__ import annotations

import asyncio

from api_poller.aws.messaging import PageAnnouncer, PagePointer, parse_message, send_message_batch
from api_poller.aws.objects import delete_raw_pages
from tests.helpers import wait_until_async

JOB = "manual__2026-11-28T05:00:00+00:00"


def pointer(page: int) -> PagePointer:
    return PagePointer(JOB, f"page-{page:06d}", "raw", f"jobs/x/raw/page-{page:06d}.json", page * 10, 10)


def drain(sqs, queue_url: str) -> list[PagePointer]:
    received = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not batch:
            return received
        received.extend(parse_message(message) for message in batch)


def test_announcer_sends_every_pointer_in_batches_of_at_most_ten(aws) -> None:
    queue_url = aws.sqs.create_queue(QueueName="announce")["QueueUrl"]
    calls: list[int] = []
    outcomes: dict[str, str] = {}

    def send(batch):
        calls.append(len(batch))
        return send_message_batch(aws.sqs, queue_url, batch)

    async def main() -> None:
        announcer = PageAnnouncer(send, lambda sent, failed: outcomes.update(sent), linger=0.05)
        for page in range(25):
            announcer.announce(pointer(page))
            await asyncio.sleep(0)
        await announcer.close()

    asyncio.run(main())
    assert sorted(calls, reverse=True) == [10, 10, 5]
    assert sorted(outcomes) == [f"page-{page:06d}" for page in range(25)]
    assert sorted(drain(aws.sqs, queue_url), key=lambda p: p.page_id) == [pointer(p) for p in range(25)]


def test_announcer_does_not_hold_a_lone_pointer_until_the_end(aws) -> None:
    queue_url = aws.sqs.create_queue(QueueName="lone")["QueueUrl"]

    async def main() -> list[PagePointer]:
        announcer = PageAnnouncer(lambda b: send_message_batch(aws.sqs, queue_url, b), lambda *_: None, 0.05)
        announcer.announce(pointer(7))
        # The fetch is still going on (the announcer is not closed): the page must go out anyway.
        seen = await wait_until_async(
            lambda: drain(aws.sqs, queue_url),
            timeout=10,
            message="a lone page reached the queue before the announcer was closed",
        )
        await announcer.close()
        return seen

    assert asyncio.run(main()) == [pointer(7)]


def test_announcer_reports_pages_it_could_not_enqueue_with_the_reason(aws) -> None:
    missing_queue = aws.sqs.create_queue(QueueName="gone")["QueueUrl"]
    aws.sqs.delete_queue(QueueUrl=missing_queue)
    failures: dict[str, str] = {}

    async def main() -> None:
        announcer = PageAnnouncer(
            lambda batch: send_message_batch(aws.sqs, missing_queue, batch),
            lambda sent, failed: failures.update(failed),
        )
        for page in range(3):
            announcer.announce(pointer(page))
        await announcer.close()

    asyncio.run(main())
    assert sorted(failures) == ["page-000000", "page-000001", "page-000002"]
    assert all(
        reason.startswith("could not enqueue:") and "queue" in reason.lower() for reason in failures.values()
    )


def test_delete_raw_pages_removes_only_the_given_objects(aws) -> None:
    aws.s3.create_bucket(Bucket="raw")
    for page in range(1_005):
        aws.s3.put_object(Bucket="raw", Key=f"p/{page:04d}", Body=b"{}")
    delete_raw_pages(aws.s3, [("raw", f"p/{page:04d}") for page in range(1_003)])  # two calls
    assert aws.keys("raw") == ["p/1003", "p/1004"]
