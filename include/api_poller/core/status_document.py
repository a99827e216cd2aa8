"""How page statuses are published so that their cost does not grow with the job's size.

A status-publishing task instance (a fetch task, the consumer) publishes:

* a **summary** (XCom ``page_status``, small): the set of its pages in each state as a compressed
  bitmap (``core.page_bits``), the reasons of its failed pages, a histogram of when its pages
  settled, and which detail chunks it wrote (a bitmap of chunk numbers). Progress, failure
  reasons and the chart are read from the summaries alone, so a progress read costs the same at
  100 or 100,000 pages.
* its pages' full records in **chunks** of CHUNK_PAGES pages (XCom ``page_status.<chunk>``), each
  rewritten only when one of its pages changed: a flush writes what changed, and a page of
  ``/tasks`` reads the one or two chunks that hold it.

``JobStatus`` merges the summaries of a run with the rule of ``core.lifecycle``: a page's state is
its most advanced one in any task; a page that succeeded anywhere is SuccessfullyCompleted (a
redriven page can succeed after failing; nothing fails a page that succeeded).

A summary written before this format (one record per page, no ``v``) is still read: it is
converted on reading, its records serving as its details.
"""

from __future__ import annotations

import functools
import operator
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from api_poller.core.json_body import load_json
from api_poller.core.page_bits import (
    PageBits,
    decode_pages,
    encode_pages,
    page_id_of,
    page_number,
    page_numbers,
    pages_mask,
)
from api_poller.core.page_state import PageState

FORMAT_VERSION = 2
CHUNK_PAGES = 250  # pages per detail chunk: a chunk of records is ~40 KB of JSON
# The settle-time histogram's bucket sizes (s): each divides every larger one and every chart bucket
# size at least as large (``jobs_api.explain.NICE_BUCKET_SECONDS``), so a chart bucket always holds
# whole histogram buckets. A task keeps the finest that needs at most MAX_TIMELINE_BUCKETS; a chart
# of the job has about 60 buckets, which are then never finer than the histogram.
TIMELINE_RESOLUTIONS = (1, 5, 30, 300, 3600, 86400)
MAX_TIMELINE_BUCKETS = 720

StatusRecord = dict[str, Any]


def chunk_of(number: int) -> int:
    return number // CHUNK_PAGES


def chunk_key(status_key: str, chunk: int) -> str:
    """The XCom key of a detail chunk: ``page_status.00012``."""
    return f"{status_key}.{chunk:05d}"


def encode_chunk(records: Mapping[str, StatusRecord]) -> str:
    """A detail chunk as the JSON text its XCom and its checkpoint carry. A chunk is written whole
    on every flush that changed one of its pages; as text it costs a task about a fortieth of what
    a nested value costs on Airflow's XCom path (serde, the comms model) and the API server's
    validation of it."""
    return msgspec.json.encode(records, enc_hook=str).decode()


def read_chunk(value: object) -> dict[str, StatusRecord] | None:
    """A published detail chunk's records: its JSON text, or the object earlier versions published;
    None if it is neither."""
    if isinstance(value, str):
        try:
            value = load_json(value)
        except ValueError:
            return None
    if not isinstance(value, dict) or not all(
        isinstance(record, dict) and "state" in record for record in value.values()
    ):
        return None
    return value


def union(masks: Iterable[int]) -> int:
    """The pages in any of ``masks`` (bitmaps)."""
    return functools.reduce(operator.or_, masks, 0)


def checked_page_number(page: str) -> int:
    number = page_number(page)
    if number is None:
        raise ValueError(f"{page!r} is not a page id (page-000042)")
    return number


def _retries(record: Mapping[str, Any]) -> int:
    extra = 0
    for key in ("attempts", "receives"):
        count = record.get(key)
        if isinstance(count, int) and not isinstance(count, bool) and count > 1:
            extra += count - 1
    return extra


def _second(record: Mapping[str, Any]) -> int | None:
    at = record.get("at")
    if isinstance(at, bool) or not isinstance(at, int | float) or at != at or abs(at) > 1e12:
        return None
    return int(at)


class StatusIndex:
    """What a summary says about one task instance's page records, kept up to date record by
    record (``update``) so that writing a summary never walks every page."""

    def __init__(self) -> None:
        self._bits = {state: PageBits() for state in PageState}
        self._failed: dict[str, list[Any]] = {}
        # Second -> [completed, failed, retries] of the records whose latest ``at`` falls in it.
        self._seconds: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])

    def update(self, page: str, old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> None:
        number = checked_page_number(page)
        if old is not None:
            self._bits[PageState(old["state"])].discard(number)
            self._count(old, -1)
        state = PageState(new["state"])
        self._bits[state].add(number)
        self._count(new, +1)
        if state is PageState.FAILED_TO_COMPLETE:
            reason = new.get("reason")
            self._failed[page] = [str(reason) if reason else None, new.get("at")]
        else:
            self._failed.pop(page, None)

    def _count(self, record: Mapping[str, Any], sign: int) -> None:
        second = _second(record)
        if second is None:
            return
        bucket = self._seconds[second]
        state = record.get("state")
        if state == PageState.SUCCESSFULLY_COMPLETED:
            bucket[0] += sign
        elif state == PageState.FAILED_TO_COMPLETE:
            bucket[1] += sign
        bucket[2] += sign * _retries(record)
        if not any(bucket):
            del self._seconds[second]

    def summary(self, chunks: Iterable[int]) -> dict[str, Any]:
        pages = {state.value: bits.encode() for state, bits in self._bits.items() if bits.as_int()}
        return {
            "v": FORMAT_VERSION,
            "pages": pages,
            "failed": dict(self._failed),
            "chunks": encode_pages(pages_mask(chunks)),  # a bitmap too: small at any page count
            "timeline": coarse_timeline(self._seconds),
        }


def coarse_timeline(seconds: Mapping[int, list[int]]) -> dict[str, Any]:
    """The per-second counts at the finest of TIMELINE_RESOLUTIONS keeping MAX_TIMELINE_BUCKETS."""
    span = max(seconds) - min(seconds) + 1 if seconds else 0
    fitting = (size for size in TIMELINE_RESOLUTIONS if span / size <= MAX_TIMELINE_BUCKETS)
    resolution = next(fitting, TIMELINE_RESOLUTIONS[-1])
    buckets: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    for second, counts in seconds.items():
        bucket = buckets[second - second % resolution]
        for index, count in enumerate(counts):
            bucket[index] += count
    return {
        "seconds": resolution,
        "buckets": {str(start): counts for start, counts in sorted(buckets.items())},
    }


# --- reading -----------------------------------------------------------------------------------


@dataclass
class TaskStatus:
    """One task instance's summary, read back: its pages per state, failures, timeline, chunks;
    ``records`` only for a summary of the earlier format (its whole record map)."""

    pages: dict[PageState, int] = field(default_factory=dict)
    failed: dict[str, list[Any]] = field(default_factory=dict)
    chunks: list[int] = field(default_factory=list)
    timeline: dict[str, Any] = field(default_factory=lambda: {"seconds": 1, "buckets": {}})
    records: dict[str, StatusRecord] | None = None

    def page_ids(self) -> list[str]:
        """Every page this task instance recorded, in page order."""
        return [page_id_of(number) for number in page_numbers(union(self.pages.values()))]


def records_summary(records: Mapping[str, Mapping[str, Any]]) -> TaskStatus:
    """A TaskStatus of whole records (a summary of the earlier format, or a recorder's floor)."""
    index = StatusIndex()
    kept: dict[str, StatusRecord] = {}
    for page, record in records.items():
        if page_number(page) is None or not isinstance(record, Mapping):
            continue
        try:
            index.update(page, None, record)
        except (KeyError, ValueError):
            continue  # a record without a known state says nothing
        kept[page] = dict(record)
    status = read_summary(index.summary(()))
    status.records = kept
    return status


def read_summary(document: object) -> TaskStatus:
    """A published summary (either format); ValueError if it is neither."""
    if not isinstance(document, Mapping):
        raise ValueError("a status summary is an object")
    if document.get("v") != FORMAT_VERSION:
        return records_summary(document)
    pages = {PageState(state): decode_pages(text) for state, text in (document.get("pages") or {}).items()}
    failed = document.get("failed") or {}
    chunks = list(page_numbers(decode_pages(document.get("chunks") or encode_pages(0))))
    timeline = document.get("timeline") or {}
    if not isinstance(failed, Mapping) or not isinstance(timeline, Mapping):
        raise ValueError("a status summary's failed or timeline has the wrong type")
    return TaskStatus(
        pages=pages,
        failed={str(page): list(value) for page, value in failed.items() if isinstance(value, list)},
        chunks=chunks,
        timeline=dict(timeline),
    )


def _failure_time(value: list[Any]) -> float:
    at = value[1] if len(value) > 1 else None
    return float(at) if isinstance(at, int | float) and not isinstance(at, bool) else 0.0


@dataclass
class JobStatus:
    """Every task instance's summary of a run, merged: each page in one state."""

    masks: dict[PageState, int]
    failures: dict[str, str | None]
    timeline_seconds: int
    timeline_buckets: dict[int, list[int]]

    @classmethod
    def merge(cls, tasks: Iterable[TaskStatus]) -> JobStatus:
        union: dict[PageState, int] = dict.fromkeys(PageState, 0)
        failed: dict[str, list[Any]] = {}
        resolution = 1
        histograms: list[tuple[int, Mapping[str, Any]]] = []
        for task in tasks:
            for state, mask in task.pages.items():
                union[state] |= mask
            for page, value in task.failed.items():
                if page not in failed or _failure_time(value) >= _failure_time(failed[page]):
                    failed[page] = value
            seconds = task.timeline.get("seconds")
            seconds = seconds if seconds in TIMELINE_RESOLUTIONS else 1
            resolution = max(resolution, seconds)
            histograms.append((seconds, task.timeline.get("buckets") or {}))
        masks = _exclusive(union)
        failed_mask = masks[PageState.FAILED_TO_COMPLETE]
        failures = {
            page: value[0] if value else None
            for page, value in sorted(failed.items())
            if (number := page_number(page)) is not None and failed_mask >> number & 1
        }
        return cls(masks, failures, resolution, _merged_histogram(histograms, resolution))

    @property
    def recorded(self) -> int:
        """Every page some task recorded (a bitmap)."""
        return union(self.masks.values())

    def count(self, state: PageState) -> int:
        return self.masks[state].bit_count()

    def progress(self, total: int) -> dict[str, int]:
        """The seed's progress document: pages per state and the planned total."""
        counts = {state.value: self.count(state) for state in PageState}
        counts["Total"] = total
        return counts

    def state_of(self, number: int) -> PageState | None:
        return next((state for state, mask in self.masks.items() if mask >> number & 1), None)

    def states(self) -> dict[str, str]:
        """Page id -> state of every recorded page (for a one-off full view, not per read)."""
        return {
            page_id_of(number): state.value
            for state, mask in self.masks.items()
            for number in page_numbers(mask)
        }


def _exclusive(union: Mapping[PageState, int]) -> dict[PageState, int]:
    """Each page in its most advanced state; success wins over failure."""
    succeeded = union[PageState.SUCCESSFULLY_COMPLETED]
    failed = union[PageState.FAILED_TO_COMPLETE] & ~succeeded
    final = succeeded | failed
    enqueued = union[PageState.ENQUEUED] & ~final
    at_least_enqueued = final | enqueued
    saved = union[PageState.PAYLOAD_SAVED] & ~at_least_enqueued
    started = union[PageState.STARTED] & ~(at_least_enqueued | saved)
    return {
        PageState.STARTED: started,
        PageState.PAYLOAD_SAVED: saved,
        PageState.ENQUEUED: enqueued,
        PageState.SUCCESSFULLY_COMPLETED: succeeded,
        PageState.FAILED_TO_COMPLETE: failed,
    }


def _merged_histogram(
    histograms: list[tuple[int, Mapping[str, Any]]], resolution: int
) -> dict[int, list[int]]:
    merged: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    for _, buckets in histograms:
        for start, counts in buckets.items():
            try:
                second = int(start)
            except ValueError:
                continue
            if not isinstance(counts, list):
                continue
            bucket = merged[second - second % resolution]
            for index, count in enumerate(counts[:3]):
                if isinstance(count, int) and not isinstance(count, bool):
                    bucket[index] += count
    return dict(sorted(merged.items()))


def chunk_pages(numbers: Iterable[int]) -> dict[int, list[int]]:
    """The chunks holding ``numbers``, each with its pages of them."""
    chunks: dict[int, list[int]] = defaultdict(list)
    for number in numbers:
        chunks[chunk_of(number)].append(number)
    return dict(chunks)
