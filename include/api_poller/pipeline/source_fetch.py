"""The fetch tasks of a source's job: each page saved raw to S3 and announced to SQS at once.

Two modes, as planned by ``pipeline.source_plan``:

* **planned**: a batch of known page requests fetched concurrently (the task's concurrency and
  rate shares). A retried or cleared task resumes as the seed's does: pages already processed are
  marked done, pages already saved are announced again, only the others are fetched.
* **walk**: pages fetched one after another from page 1, each next request chosen by the
  paginator from the page before. Each page is saved and enqueued as soon as it arrives (while
  the next one is fetched), with its record count in its status. The walk ends on a paginator
  stop (empty page, last page, no cursor, ``has_more`` false, no next link, ``max_pages``), or on
  a failure: a page that cannot be fetched, a cursor or next link that repeats (a loop), a next
  link to another host, a body without what the source declares. Such a failure is recorded as
  the FailedToComplete status of the page that could not be had (with the reason), so the job
  reports incomplete instead of the task crashing (a page S3 refuses is failed alone: the walk
  goes on).
  The last page's status and the task's return value say how the walk ended (pages discovered,
  stop reason, truncated by ``max_pages``).

  A retried or cleared walk task walks again from page 1: the next request of a page is only known
  from its response, and a processed page's raw object is gone. Page keys are deterministic, so a
  page saved by the earlier try is overwritten and announced again (processing is idempotent);
  a page already processed is fetched (for its next request) but neither saved nor announced.

Every request goes through ``partner.source_client.SourceClient``: the Connection's credentials
are scoped to its origin, and the task's ``RateLimiter`` shares a 429 with the job's other tasks
through ``aws.slow_down.S3SlowDownSignal``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, cast

import aiohttp
from botocore.exceptions import BotoCoreError, ClientError

from api_poller.aws.messaging import PageAnnouncer, PagePointer, SendBatch
from api_poller.aws.objects import stored_page_ids
from api_poller.aws.slow_down import S3SlowDownSignal
from api_poller.core.byte_budget import AsyncByteBudget, PageHold
from api_poller.core.errors import (
    CrossOriginRequest,
    FatalError,
    PaginationLoop,
    PollerError,
    ResponseShapeError,
)
from api_poller.core.keys import processed_prefix, raw_payload_key, raw_prefix
from api_poller.core.lifecycle import PageState, StatusRecorder
from api_poller.core.planning import page_id
from api_poller.observability.metrics import JobMetrics
from api_poller.partner.auth import HttpConnection, connection_origin, credentials_for
from api_poller.partner.paginators import PageRequest, Paginator, Stop, paginator_for
from api_poller.partner.rate_limit import RateLimiter
from api_poller.partner.source_client import SourceClient, SourcePage
from api_poller.pipeline.progress_log import ProgressLog
from api_poller.pipeline.source_plan import MODE_PLANNED, MODE_WALK, batch_requests
from api_poller.settings import PollerSettings
from api_poller.sources.spec import SourceSpec

if TYPE_CHECKING:
    from api_poller.aws.clients import S3Client, SqsClient

log = logging.getLogger(__name__)

# Why a walk ended, besides the paginator's own stop reasons (StopReason values).
WALK_FAILED = "failed"
WALK_LOOP = "loop"
WALK_FOREIGN_LINK = "foreign_link"
SAVES_IN_FLIGHT = 4
WALK_ENDING_ERRORS: dict[type[FatalError], str] = {
    PaginationLoop: WALK_LOOP,
    CrossOriginRequest: WALK_FOREIGN_LINK,
}


@dataclass
class SourceBatchResult:
    """What a fetch task did: small, it is the task's XCom (page details are in ``page_status``).

    For a walk, ``pages`` is the number of pages discovered, and ``stop_reason``/``stop_detail``
    say how it ended; ``complete`` is False when it ended on a failure or on ``max_pages``.
    """

    mode: str
    pages: int = 0
    saved: int = 0
    enqueued: int = 0
    resumed: int = 0
    records: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    stop_reason: str | None = None
    stop_detail: str = ""
    truncated: bool = False

    @property
    def complete(self) -> bool:
        return not self.failed and not self.truncated

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "complete": self.complete}


@dataclass(frozen=True)
class RawPage:
    """What is saved of a fetched page: its body and record count (its parsed document, as large
    as the body, is let go before the page waits for S3)."""

    body: bytes | bytearray
    records: int
    attempts: int

    @classmethod
    def of(cls, fetched: SourcePage) -> RawPage:
        return cls(fetched.body, len(fetched.records), fetched.attempts)


@dataclass(frozen=True)
class SourceReading:
    """How a consumer reads this source's pages (carried in every SQS message)."""

    records_path: str
    primary_key: str | None
    cursor_field: str | None

    @classmethod
    def of(cls, spec: SourceSpec) -> SourceReading:
        cursor = spec.incremental.cursor_field if spec.incremental else None
        return cls(spec.records.text, spec.primary_key, cursor)


class _PageSink:
    """Saves pages to the raw bucket, announces them, records their statuses."""

    def __init__(
        self,
        *,
        job_id: str,
        s3_client: S3Client,
        bucket: str,
        send_batch: SendBatch,
        recorder: StatusRecorder,
        reading: SourceReading,
        result: SourceBatchResult,
        metrics: JobMetrics,
    ) -> None:
        self.job_id, self.s3, self.bucket = job_id, s3_client, bucket
        self.recorder, self.reading, self.result = recorder, reading, result
        self.metrics = metrics
        self.announcer = PageAnnouncer(send_batch, self._on_sent)

    def _on_sent(self, sent: dict[str, str], failed: dict[str, str]) -> None:
        for page, message_id in sent.items():
            self.recorder.mark(page, PageState.ENQUEUED, message_id=message_id)
        for page, reason in failed.items():
            self.fail(page, reason)
        self.result.enqueued += len(sent)

    def fail(self, page: str, reason: str, error: PollerError | None = None) -> None:
        """The page is given up on; ``error``: the request's last error (counted if a 429)."""
        self.result.failed[page] = reason
        self.recorder.mark(page, PageState.FAILED_TO_COMPLETE, reason=reason)
        self.metrics.page_failed()
        if error is not None:
            self.metrics.request_failed(error, retried=False)

    def pointer(self, page: str, key: str, records: int) -> PagePointer:
        return PagePointer(
            self.job_id,
            page,
            self.bucket,
            key,
            0,  # the seed's record offset; a source's page is read through its records path
            records,
            records_path=self.reading.records_path,
            primary_key=self.reading.primary_key,
            cursor_field=self.reading.cursor_field,
        )

    async def save(self, page: str, fetched: RawPage, **details: Any) -> bool:
        """Save and announce one page; False (and the page failed) if S3 refused it."""
        key = raw_payload_key(self.job_id, page)
        try:
            await asyncio.to_thread(
                self.s3.put_object,
                Bucket=self.bucket,
                Key=key,
                # botocore takes a bytearray as it takes bytes (its stubs name only bytes).
                Body=cast(bytes, fetched.body),
                ContentType="application/json",
                # Read back when a retried task announces the saved page again.
                Metadata={"records": str(fetched.records)},
            )
        except (ClientError, BotoCoreError) as error:
            self.fail(page, f"could not save the page to S3: {error}")
            return False
        records = fetched.records
        self.metrics.page_fetched(len(fetched.body))
        self.result.saved += 1
        self.result.records += records
        self.recorder.mark(
            page, PageState.PAYLOAD_SAVED, attempts=fetched.attempts, raw_key=key, records=records, **details
        )
        self.announcer.announce(self.pointer(page, key, records))
        return True

    async def announce_saved(self, page: str) -> None:
        """Announce again a page an earlier try of the task saved (its count from the object)."""
        key = raw_payload_key(self.job_id, page)
        try:
            head = await asyncio.to_thread(self.s3.head_object, Bucket=self.bucket, Key=key)
            records = int(head.get("Metadata", {}).get("records", 0))
        except (ClientError, BotoCoreError, ValueError):
            records = 0  # consumed meanwhile: processing recognises the page by its output
        self.recorder.mark(page, PageState.PAYLOAD_SAVED, raw_key=key, records=records, resumed=True)
        self.announcer.announce(self.pointer(page, key, records))

    async def close(self) -> None:
        # Whatever was saved is announced, even if the task is being torn down.
        await self.announcer.close()
        self.recorder.flush()


def _on_retry(sink: _PageSink, page: str, client: SourceClient) -> Callable[[int, PollerError], None]:
    def on_retry(attempt: int, error: PollerError) -> None:
        shown = client.shown(str(error))
        log.warning("%s attempt %d failed, retrying: %s", page, attempt, shown)
        sink.recorder.mark(page, PageState.STARTED, attempts=attempt, error=shown)
        sink.metrics.request_failed(error, retried=True)

    return on_retry


async def _stored(
    s3_client: S3Client, bucket: str, processed_bucket: str, job_id: str
) -> tuple[set[str], set[str]]:
    saved = await asyncio.to_thread(stored_page_ids, s3_client, bucket, raw_prefix(job_id))
    processed = await asyncio.to_thread(
        stored_page_ids, s3_client, processed_bucket, processed_prefix(job_id)
    )
    return saved, processed


async def fetch_planned_pages(
    *,
    job_id: str,
    requests: Sequence[PageRequest],
    client: SourceClient,
    sink: _PageSink,
    processed_bucket: str,
    concurrency: int,
    budget: AsyncByteBudget | None = None,
) -> SourceBatchResult:
    """Fetch every planned request with at most ``concurrency`` in flight; save and enqueue each.

    A page that still fails after its retries is FailedToComplete with the reason; it never fails
    the others. Pages an earlier try already saved or processed are not fetched again. With
    ``budget``, the bodies held at once (read, parsed, being saved) stay within its bytes.
    """
    result, recorder = sink.result, sink.recorder
    result.pages = len(requests)
    saved_before, processed_before = await _stored(sink.s3, sink.bucket, processed_bucket, job_id)
    in_flight = asyncio.Semaphore(concurrency)
    progress = ProgressLog("fetch", len(requests))

    async def resume(page: str) -> bool:
        if page in processed_before:
            recorder.mark(page, PageState.SUCCESSFULLY_COMPLETED, resumed=True)
        elif page in saved_before:
            await sink.announce_saved(page)
        else:
            return False
        result.resumed += 1
        return True

    async def one(request: PageRequest) -> None:
        page = page_id(request.page)
        if not await resume(page):
            async with in_flight:
                recorder.mark(page, PageState.STARTED)
                hold = budget.hold() if budget is not None else None
                try:
                    raw = RawPage.of(await client.fetch(request, _on_retry(sink, page, client), hold))
                except PollerError as error:
                    sink.fail(page, client.shown(str(error)), error)
                else:
                    await sink.save(page, raw)
                finally:
                    if hold is not None:
                        hold.release()
        progress.advance()

    await asyncio.gather(*(one(request) for request in requests))
    return result


async def walk_pages(
    *,
    job_id: str,
    paginator: Paginator,
    client: SourceClient,
    sink: _PageSink,
    processed_bucket: str,
    budget: AsyncByteBudget | None = None,
) -> SourceBatchResult:
    """Walk from the paginator's first request to its stop, saving and enqueueing each page.

    With ``budget``, the bodies held at once (the page being fetched and those being saved)
    stay within its bytes."""
    result = sink.result
    _, processed_before = await _stored(sink.s3, sink.bucket, processed_bucket, job_id)
    # A page is saved while the next one is fetched (at most SAVES_IN_FLIGHT pages held).
    saving: set[asyncio.Task[bool]] = set()
    room = asyncio.Semaphore(SAVES_IN_FLIGHT)

    async def save(page: str, fetched: RawPage, details: dict[str, Any], hold: PageHold | None) -> bool:
        try:
            return await sink.save(page, fetched, **details)
        finally:
            room.release()
            if hold is not None:
                hold.release()

    try:
        await _walk(paginator, client, sink, processed_before, save, room, saving, budget)
    finally:
        await asyncio.gather(*saving, return_exceptions=True)
    log.info("walk ended after %d pages: %s %s", result.pages, result.stop_reason, result.stop_detail)
    return result


async def _walk(
    paginator: Paginator,
    client: SourceClient,
    sink: _PageSink,
    processed_before: set[str],
    save: Callable[[str, RawPage, dict[str, Any], PageHold | None], Coroutine[Any, Any, bool]],
    room: asyncio.Semaphore,
    saving: set[asyncio.Task[bool]],
    budget: AsyncByteBudget | None,
) -> None:
    result, recorder = sink.result, sink.recorder
    request: PageRequest = paginator.first_request()
    while True:
        page = page_id(request.page)
        recorder.mark(page, PageState.STARTED)
        # Released by the page's save (or below, when it is not saved).
        hold = budget.hold() if budget is not None else None
        try:
            fetched = await client.fetch(request, _on_retry(sink, page, client), hold)
        except PollerError as error:
            sink.fail(page, client.shown(str(error)), error)
            result.stop_reason, result.stop_detail = WALK_FAILED, f"page {request.page} failed"
            break
        result.pages += 1
        step = _next_step(paginator, fetched, client)
        raw = RawPage.of(fetched)
        del fetched  # the parsed document: only the body is saved
        ending = step if isinstance(step, Stop) else None
        details: dict[str, Any] = {}
        if ending is not None:
            details = {"last": True, "stop_reason": ending.reason.value, "stop_detail": ending.detail}
        if page in processed_before:
            result.resumed += 1
            recorder.mark(
                page, PageState.SUCCESSFULLY_COMPLETED, resumed=True, records=raw.records, **details
            )
            if hold is not None:
                hold.release()
        else:
            # A page that cannot be saved is failed by the sink; the walk goes on (its next
            # request is known), and the job reports incomplete.
            await room.acquire()
            task = asyncio.create_task(save(page, raw, details, hold))
            saving.add(task)
            task.add_done_callback(saving.discard)
        if isinstance(step, FatalError):
            following = page_id(request.page + 1)
            sink.fail(following, str(step))
            result.stop_reason = WALK_ENDING_ERRORS.get(type(step), WALK_FAILED)
            result.stop_detail = str(step)
            break
        if isinstance(step, Stop):
            result.stop_reason, result.stop_detail, result.truncated = (
                step.reason.value,
                step.detail,
                step.truncated,
            )
            break
        request = step


def _next_step(
    paginator: Paginator, fetched: SourcePage, client: SourceClient
) -> PageRequest | Stop | FatalError:
    """The next request, the stop, or the error (a loop, a foreign next link, a malformed body)
    that ends the walk; error messages are redacted (a next link may echo a credential)."""
    try:
        return paginator.next_request(fetched.response())
    except (PaginationLoop, CrossOriginRequest, ResponseShapeError) as error:
        return type(error)(client.shown(str(error)))


def fetch_task_arguments(plan: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One mapping of keyword arguments of ``fetch_source_batch`` per mapped fetch task."""
    return [
        {
            "mode": plan["mode"],
            "base_request": plan["base_request"],
            "batch": batch,
            "concurrency": concurrency,
            "requests_per_second": rate,
        }
        for batch, concurrency, rate in zip(
            plan["batches"], plan["concurrency_shares"], plan["rate_shares"], strict=True
        )
    ]


async def fetch_source_pages(
    spec: SourceSpec,
    *,
    job_id: str,
    mode: str,
    base_request: PageRequest,
    batch: Sequence[PageRequest],
    concurrency: int,
    connection: HttpConnection,
    settings: PollerSettings,
    s3_client: S3Client,
    send_batch: SendBatch,
    recorder: StatusRecorder,
    limiter: RateLimiter,
) -> SourceBatchResult:
    """A fetch task's work on its event loop (see ``fetch_source_batch``)."""
    if mode not in (MODE_PLANNED, MODE_WALK):
        raise FatalError(f"unknown fetch mode {mode!r}: {MODE_PLANNED} or {MODE_WALK}")
    credentials = credentials_for(connection, spec.auth)
    result = SourceBatchResult(mode=mode)
    sink = _PageSink(
        job_id=job_id,
        s3_client=s3_client,
        bucket=settings.raw_bucket,
        send_batch=send_batch,
        recorder=recorder,
        reading=SourceReading.of(spec),
        result=result,
        metrics=JobMetrics(spec.name),
    )
    budget = AsyncByteBudget(settings.page_bytes_in_flight)
    connector = aiohttp.TCPConnector(limit=concurrency)
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            client = SourceClient.for_source(session, credentials, spec, settings, limiter)
            if mode == MODE_PLANNED:
                await fetch_planned_pages(
                    job_id=job_id,
                    requests=batch,
                    client=client,
                    sink=sink,
                    processed_bucket=settings.processed_bucket,
                    concurrency=concurrency,
                    budget=budget,
                )
            else:
                paginator = paginator_for(
                    spec.paginator,
                    base_request,
                    origin=connection_origin(connection),
                    max_pages=spec.max_pages,
                )
                await walk_pages(
                    job_id=job_id,
                    paginator=paginator,
                    client=client,
                    sink=sink,
                    processed_bucket=settings.processed_bucket,
                    budget=budget,
                )
    finally:
        await sink.close()
    return result


def fetch_source_batch(
    settings: PollerSettings,
    spec: SourceSpec,
    *,
    job_id: str,
    mode: str,
    base_request: Mapping[str, Any],
    batch: Mapping[str, Any] | list[Mapping[str, Any]],
    concurrency: int,
    requests_per_second: float | None,
    connection: HttpConnection,
    s3_client: S3Client,
    sqs_client: SqsClient,
    queue_url: str,
    recorder: StatusRecorder,
) -> dict[str, Any]:
    """The fetch task of a source: its batch (planned) or the whole walk, saved and enqueued.

    Credentials are built here from the source's Connection (never from XCom); every request,
    the planned ones included, is checked against the Connection's origin before it is sent.
    """
    from api_poller.aws.messaging import send_message_batch

    limiter = RateLimiter(
        requests_per_second, signal=S3SlowDownSignal(s3_client, settings.raw_bucket, job_id)
    )
    result = asyncio.run(
        fetch_source_pages(
            spec,
            job_id=job_id,
            mode=mode,
            base_request=PageRequest.from_dict(base_request),
            # A walk's requests come from its responses: its batch only names page 1.
            batch=batch_requests(base_request, batch) if mode == MODE_PLANNED else [],
            concurrency=concurrency,
            connection=connection,
            settings=settings,
            s3_client=s3_client,
            send_batch=lambda pointers: send_message_batch(sqs_client, queue_url, pointers),
            recorder=recorder,
            limiter=limiter,
        )
    )
    return result.to_dict()
