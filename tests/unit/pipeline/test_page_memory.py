"""A task holds at most its byte budget of pages, however large the pages and however many
requests or workers run (issue 14 item 3): asserted on the budget's high-water mark, against a
real HTTP server and moto, with every page still saved and processed once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from api_poller_dev.simulator import SimulatorConfig, run_in_thread

from api_poller.aws.messaging import send_message_batch
from api_poller.core.byte_budget import AsyncByteBudget
from api_poller.core.keys import raw_payload_key
from api_poller.core.lifecycle import PageState, StatusRecorder
from api_poller.core.planning import PageTask, page_id
from api_poller.partner.client import ClientOptions, RetryPolicy
from api_poller.pipeline import source_fetch
from api_poller.pipeline.consume import PageConsumer, RunOutcome
from api_poller.pipeline.fetch import BatchResult, fetch_pages_to_s3
from tests.helpers import serve_in_thread
from tests.unit.pipeline.conftest import SETTINGS, MotoStack
from tests.unit.pipeline.source_support import SETTINGS as SOURCE_SETTINGS
from tests.unit.pipeline.source_support import Conn, run_source_job, source
from tests.unit.pipeline.test_consume import FakeFetch, announce, enqueued, save_raw

JOB = "manual__2026-12-02T05:00:00+00:00"
RECORDS = 10
FILLER = "x" * 10_000  # ~100 KB pages
PAGES = [PageTask(page=n, start_at=n * RECORDS, count=RECORDS) for n in range(12)]
FAST = RetryPolicy(attempts=3, initial_seconds=0.001, max_seconds=0.01)


def page_body(start: int, count: int) -> bytes:
    records = [{"id": start + i, "filler": FILLER} for i in range(count)]
    return json.dumps({"totalRecords": 120, "payload": records}).encode()


PAGE_BYTES = max(len(page_body(page.start_at, RECORDS)) for page in PAGES)  # the largest


@pytest.fixture
def large_pages() -> Iterator[str]:
    """Pages of ~100 KB: with a Content-Length at /payload, chunked (size unknown) at /chunked."""

    async def payload(request: web.Request) -> web.Response:
        body = page_body(int(request.query["startAt"]), int(request.query["count"]))
        await asyncio.sleep(0.01)  # the requests overlap
        return web.Response(body=body, content_type="application/json")

    async def chunked(request: web.Request) -> web.StreamResponse:
        body = page_body(int(request.query["startAt"]), int(request.query["count"]))
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(body), 16_384):
            await response.write(body[start : start + 16_384])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/payload", payload)
    app.router.add_get("/chunked", chunked)
    with serve_in_thread(app) as base_url:
        yield base_url


def fetch(stack: MotoStack, url: str, budget: AsyncByteBudget, limit: int = 1 << 20) -> BatchResult:
    return asyncio.run(
        fetch_pages_to_s3(
            job_id=JOB,
            url=url,
            pages=PAGES,
            s3_client=stack.s3,
            bucket=SETTINGS.raw_bucket,
            processed_bucket=SETTINGS.processed_bucket,
            send_batch=lambda pointers: send_message_batch(stack.sqs, stack.queue_url, pointers),
            recorder=StatusRecorder(lambda value: None, interval=0.0),
            policy=FAST,
            options=ClientOptions(timeout=10.0, max_response_bytes=limit),
            concurrency=8,
            budget=budget,
        )
    )


@pytest.mark.parametrize("path", ["payload", "chunked"])
def test_the_seed_fetch_never_holds_more_pages_than_its_budget(
    stack: MotoStack, large_pages: str, path: str
) -> None:
    budget = AsyncByteBudget(int(PAGE_BYTES * 2.5))  # 8 requests in flight, room for 2 pages

    result = fetch(stack, f"{large_pages}/{path}", budget)

    assert (result.saved, result.enqueued, result.failed) == (12, 12, {})
    assert PAGE_BYTES <= budget.high_water <= budget.capacity
    assert budget.held == 0  # every reservation given back
    saved = stack.s3.get_object(Bucket=SETTINGS.raw_bucket, Key=raw_payload_key(JOB, PAGES[5].page_id))
    assert saved["Body"].read() == page_body(PAGES[5].start_at, RECORDS)


def test_a_page_larger_than_the_budget_is_fetched_alone_and_saved(stack: MotoStack, large_pages: str) -> None:
    budget = AsyncByteBudget(PAGE_BYTES // 2)

    result = fetch(stack, f"{large_pages}/payload", budget)

    assert (result.saved, result.failed) == (12, {})
    # The page takes the whole budget, then its real size: never two pages at once.
    assert budget.high_water == PAGE_BYTES


def test_the_response_size_limit_is_still_refused_with_its_reason(stack: MotoStack, large_pages: str) -> None:
    budget = AsyncByteBudget(PAGE_BYTES * 4)

    result = fetch(stack, f"{large_pages}/payload", budget, limit=PAGE_BYTES // 2)

    assert result.saved == 0 and len(result.failed) == 12
    assert all("above the limit" in reason for reason in result.failed.values())
    assert budget.held == 0


def test_the_process_workers_never_hold_more_pages_than_their_budget(stack: MotoStack) -> None:
    pages = range(12)
    filler = [{"id": n, "filler": FILLER} for n in range(RECORDS)]
    announce(stack, [save_raw(stack, page, records=filler) for page in pages])
    recorder = StatusRecorder(lambda value: None, interval=0.0)
    capacity = int(PAGE_BYTES * 2.5)
    consumer = PageConsumer(
        s3=stack.s3,
        sqs=stack.sqs,
        queue_url=stack.queue_url,
        dead_letter_queue_url=stack.dead_letter_queue_url,
        raw_bucket=SETTINGS.raw_bucket,
        processed_bucket=SETTINGS.processed_bucket,
        job_id=JOB,
        pages=[page_id(page) for page in pages],
        recorder=recorder,
        fetch=FakeFetch(records=enqueued(*pages)),
        wait_time_seconds=0,
        workers=8,
        page_bytes_in_flight=capacity,
    )

    assert consumer.run(60) is RunOutcome.SETTLED

    assert PAGE_BYTES // 2 <= consumer.budget.high_water <= capacity
    assert consumer.budget.held == 0
    states = {recorder.records[page_id(page)]["state"] for page in pages}
    assert states == {PageState.SUCCESSFULLY_COMPLETED}


def test_a_source_fetch_never_holds_more_pages_than_its_budget(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    budgets: list[AsyncByteBudget] = []

    class Recorded(AsyncByteBudget):
        def __init__(self, capacity: int) -> None:
            super().__init__(capacity)
            budgets.append(self)

    monkeypatch.setattr(source_fetch, "AsyncByteBudget", Recorded)
    config = SimulatorConfig(total_records=200, page_size=10, latency_ms=0, error_rate=0, record_bytes=10_000)
    settings = SOURCE_SETTINGS.__class__(
        **{**SOURCE_SETTINGS.__dict__, "page_bytes_in_flight": 250_000, "default_concurrency": 8}
    )

    with run_in_thread(config) as base_url:
        outcome = run_source_job(aws, source("offset_total"), Conn(host=base_url), settings=settings)

    assert sorted(record["id"] for record in outcome.records) == list(range(200))
    assert budgets and all(90_000 <= budget.high_water <= 250_000 for budget in budgets)
    assert all(budget.held == 0 for budget in budgets)
