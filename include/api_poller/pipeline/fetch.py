"""Fetch a batch of pages concurrently, save each one as served to the raw bucket, and announce it.

A page is enqueued for processing as soon as it is saved (10 pointers per SQS call), so the
process step works while the fetch goes on instead of after it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp

from api_poller import names
from api_poller.aws.messaging import PageAnnouncer, PagePointer, SendBatch
from api_poller.aws.objects import stored_page_ids
from api_poller.core.byte_budget import AsyncByteBudget
from api_poller.core.errors import PollerError
from api_poller.core.keys import processed_prefix, raw_payload_key, raw_prefix
from api_poller.core.lifecycle import PageState, StatusRecorder
from api_poller.core.planning import PageTask
from api_poller.observability.metrics import JobMetrics
from api_poller.partner.client import ClientOptions, RetryPolicy, fetch_page
from api_poller.pipeline.progress_log import ProgressLog
from api_poller.settings import PollerSettings

log = logging.getLogger(__name__)


@dataclass
class BatchResult:
    """What a fetch task did (small: it is the task's XCom; page details are in ``page_status``)."""

    pages: int = 0
    saved: int = 0
    enqueued: int = 0
    resumed: int = 0
    failed: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def fetch_pages_to_s3(
    *,
    job_id: str,
    url: str,
    pages: Sequence[PageTask],
    s3_client: Any,
    bucket: str,
    processed_bucket: str,
    send_batch: SendBatch,
    recorder: StatusRecorder,
    policy: RetryPolicy,
    options: ClientOptions,
    concurrency: int,
    budget: AsyncByteBudget | None = None,
) -> BatchResult:
    """Fetch every page with at most ``concurrency`` requests in flight; enqueue each one saved.

    With ``budget``, the bodies held at once (read, checked, being saved) stay within its bytes,
    however large the pages: a request whose body does not fit waits, unread, for room.

    A page that still fails after its retries is recorded as FailedToComplete with the reason;
    it never fails the other pages. Pages an earlier try of this job already saved or processed
    are not fetched again (a cleared or retried task resumes; saved pages are announced again,
    which processing tolerates: it is idempotent).
    """
    result = BatchResult(pages=len(pages))
    metrics = JobMetrics(names.POLLER_DAG_ID)  # the seed's jobs are tagged with its DAG id
    saved_before = await asyncio.to_thread(stored_page_ids, s3_client, bucket, raw_prefix(job_id))
    processed_before = await asyncio.to_thread(
        stored_page_ids, s3_client, processed_bucket, processed_prefix(job_id)
    )
    in_flight = asyncio.Semaphore(concurrency)
    progress = ProgressLog("fetch", len(pages))

    def on_sent(sent: dict[str, str], failed: dict[str, str]) -> None:
        for page, message_id in sent.items():
            recorder.mark(page, PageState.ENQUEUED, message_id=message_id)
        for page, reason in failed.items():
            result.failed[page] = reason
            recorder.mark(page, PageState.FAILED_TO_COMPLETE, reason=reason)
            metrics.page_failed()
        result.enqueued += len(sent)

    announcer = PageAnnouncer(send_batch, on_sent)

    def pointer_to(page: PageTask, key: str) -> PagePointer:
        return PagePointer(job_id, page.page_id, bucket, key, page.start_at, page.count)

    def resume(page: PageTask) -> bool:
        key = raw_payload_key(job_id, page.page_id)
        if page.page_id in processed_before:
            recorder.mark(page.page_id, PageState.SUCCESSFULLY_COMPLETED, resumed=True)
        elif page.page_id in saved_before:
            recorder.mark(page.page_id, PageState.PAYLOAD_SAVED, raw_key=key, resumed=True)
            announcer.announce(pointer_to(page, key))
        else:
            return False
        result.resumed += 1
        progress.advance()
        return True

    async def one(page: PageTask) -> None:
        if resume(page):
            return
        async with in_flight:
            recorder.mark(page.page_id, PageState.STARTED)

            def on_retry(attempt: int, error: PollerError) -> None:
                log.warning("%s attempt %d failed, retrying: %s", page.page_id, attempt, error)
                recorder.mark(page.page_id, PageState.STARTED, attempts=attempt, error=str(error))
                metrics.request_failed(error, retried=True)

            key = raw_payload_key(job_id, page.page_id)
            hold = budget.hold() if budget is not None else None
            try:
                fetched = await fetch_page(session, url, page, policy, options, on_retry, hold)
                await asyncio.to_thread(
                    s3_client.put_object,
                    Bucket=bucket,
                    Key=key,
                    Body=fetched.body,
                    ContentType="application/json",
                )
            except PollerError as exc:
                result.failed[page.page_id] = str(exc)
                recorder.mark(page.page_id, PageState.FAILED_TO_COMPLETE, reason=str(exc))
                metrics.page_failed()
                metrics.request_failed(exc, retried=False)
            else:
                metrics.page_fetched(len(fetched.body))
                result.saved += 1
                recorder.mark(page.page_id, PageState.PAYLOAD_SAVED, attempts=fetched.attempts, raw_key=key)
                announcer.announce(pointer_to(page, key))
            finally:
                if hold is not None:
                    hold.release()  # saved (or given up): its bytes may be read by another page
            progress.advance()

    connector = aiohttp.TCPConnector(limit=concurrency)
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            await asyncio.gather(*(one(page) for page in pages))
    finally:
        # Whatever was saved is announced, even if the task is being torn down.
        await announcer.close()
        recorder.flush()
    return result


def fetch_batch(
    settings: PollerSettings,
    *,
    job_id: str,
    url: str,
    pages: Sequence[PageTask],
    concurrency: int,
    s3_client: Any,
    sqs_client: Any,
    queue_url: str,
    recorder: StatusRecorder,
) -> dict[str, Any]:
    """The fetch task: check the URL again (DNS may have changed), fetch, save and enqueue."""
    from api_poller.aws.messaging import send_message_batch
    from api_poller.partner.connection import check_job_url, client_options, retry_policy

    check_job_url(url, settings)
    result = asyncio.run(
        fetch_pages_to_s3(
            job_id=job_id,
            url=url,
            pages=pages,
            s3_client=s3_client,
            bucket=settings.raw_bucket,
            processed_bucket=settings.processed_bucket,
            send_batch=lambda pointers: send_message_batch(sqs_client, queue_url, pointers),
            recorder=recorder,
            policy=retry_policy(settings),
            options=client_options(settings, url),
            concurrency=concurrency,
            budget=AsyncByteBudget(settings.page_bytes_in_flight),
        )
    )
    return result.to_dict()
