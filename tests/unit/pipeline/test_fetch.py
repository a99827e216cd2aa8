"""Unit tests of api_poller.pipeline.fetch.fetch_pages_to_s3 against a small partner API on
127.0.0.1 and moto in process for S3 and SQS."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from api_poller.aws.messaging import parse_message, send_message_batch
from api_poller.core.keys import processed_key, raw_payload_key
from api_poller.core.lifecycle import PageState, StatusRecorder
from api_poller.core.planning import PageTask, page_id
from api_poller.partner.client import ClientOptions, RetryPolicy
from api_poller.pipeline.fetch import BatchResult, fetch_pages_to_s3
from api_poller.settings import PollerSettings
from tests.helpers import serve_in_thread
from tests.unit.pipeline.conftest import MotoStack

SETTINGS = PollerSettings()
JOB = "manual__2026-12-02T05:00:00+00:00"
PAGE_SIZE = 5
PAGES = [PageTask(page=n, start_at=n * PAGE_SIZE, count=PAGE_SIZE) for n in range(8)]
FAST = RetryPolicy(attempts=3, initial_seconds=0.001, max_seconds=0.01)


@dataclass
class Partner:
    """A paged API that counts requests per startAt and fails the ones it is told to."""

    url: str
    requests: Counter[int] = field(default_factory=Counter)
    broken: set[int] = field(default_factory=set)


def announced(stack: MotoStack) -> list[str]:
    """Page ids of the messages waiting in the queue."""
    pages = []
    while batch := stack.sqs.receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=10).get(
        "Messages"
    ):
        pages.extend(parse_message(message).page_id for message in batch)
    return sorted(pages)


@pytest.fixture
def partner() -> Iterator[Partner]:
    state = Partner(url="")

    async def payload(request: web.Request) -> web.Response:
        start, count = int(request.query["startAt"]), int(request.query["count"])
        state.requests[start] += 1
        if start in state.broken:
            return web.json_response({"error": "simulated"}, status=500)
        records = [{"id": start + i} for i in range(count)]
        return web.json_response({"totalRecords": 40, "maxRecordsPerPage": PAGE_SIZE, "payload": records})

    app = web.Application()
    app.router.add_get("/payload", payload)
    with serve_in_thread(app) as base_url:
        state.url = f"{base_url}/payload"
        yield state


def fetch(stack: MotoStack, partner: Partner, recorder: StatusRecorder) -> BatchResult:
    return asyncio.run(
        fetch_pages_to_s3(
            job_id=JOB,
            url=partner.url,
            pages=PAGES,
            s3_client=stack.s3,
            bucket=SETTINGS.raw_bucket,
            processed_bucket=SETTINGS.processed_bucket,
            send_batch=lambda pointers: send_message_batch(stack.sqs, stack.queue_url, pointers),
            recorder=recorder,
            policy=FAST,
            options=ClientOptions(timeout=5.0),
            concurrency=4,
        )
    )


def new_recorder() -> StatusRecorder:
    return StatusRecorder(lambda value: None, interval=0.0)


def test_every_page_is_saved_as_served_and_announced(stack: MotoStack, partner: Partner) -> None:
    recorder = new_recorder()

    result = fetch(stack, partner, recorder)

    assert (result.saved, result.enqueued, result.resumed, result.failed) == (8, 8, 0, {})
    for page in PAGES:
        raw = stack.s3.get_object(Bucket=SETTINGS.raw_bucket, Key=raw_payload_key(JOB, page.page_id))
        assert [r["id"] for r in json.loads(raw["Body"].read())["payload"]] == list(
            range(page.start_at, page.start_at + page.count)
        )
        record = recorder.records[page.page_id]
        assert record["state"] == PageState.ENQUEUED
        assert record["message_id"] and record["raw_key"] == raw_payload_key(JOB, page.page_id)
    assert announced(stack) == [page.page_id for page in PAGES]


def test_a_resumed_fetch_skips_pages_already_saved_or_processed(stack: MotoStack, partner: Partner) -> None:
    saved, processed = PAGES[1], PAGES[2]
    stack.s3.put_object(Bucket=SETTINGS.raw_bucket, Key=raw_payload_key(JOB, saved.page_id), Body=b"{}")
    stack.s3.put_object(
        Bucket=SETTINGS.processed_bucket, Key=processed_key(JOB, processed.page_id), Body=b"{}\n"
    )
    recorder = new_recorder()

    result = fetch(stack, partner, recorder)

    assert partner.requests[saved.start_at] == 0 and partner.requests[processed.start_at] == 0
    assert (result.saved, result.resumed) == (6, 2)
    # The saved page is announced again (processing is idempotent); the processed one is done.
    assert recorder.records[saved.page_id]["state"] == PageState.ENQUEUED
    assert recorder.records[saved.page_id]["resumed"] is True
    assert recorder.records[processed.page_id]["state"] == PageState.SUCCESSFULLY_COMPLETED
    assert announced(stack) == [page.page_id for page in PAGES if page != processed]


def test_a_page_that_keeps_failing_is_failed_with_the_reason_and_the_others_complete(
    stack: MotoStack, partner: Partner
) -> None:
    broken = PAGES[3]
    partner.broken.add(broken.start_at)
    recorder = new_recorder()

    result = fetch(stack, partner, recorder)

    assert partner.requests[broken.start_at] == FAST.attempts
    record = recorder.records[broken.page_id]
    assert record["state"] == PageState.FAILED_TO_COMPLETE
    assert record["reason"].startswith("gave up after 3 attempts") and "500" in record["reason"]
    assert result.failed == {broken.page_id: record["reason"]}
    assert (result.saved, result.enqueued) == (7, 7)
    assert announced(stack) == [page.page_id for page in PAGES if page != broken]
    assert raw_payload_key(JOB, page_id(broken.page)) not in [
        item["Key"] for item in stack.s3.list_objects_v2(Bucket=SETTINGS.raw_bucket).get("Contents", [])
    ]
