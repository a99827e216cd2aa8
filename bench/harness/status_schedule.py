"""When page-status documents are flushed over a run, and how read latencies are summarized
(``bench/status_read.py``). The flush rule is the product's own ``StatusRecorder``, on a clock the
benchmark moves."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from api_poller.core.lifecycle import PageState, StatusRecorder
from api_poller.core.planning import PageTask


class FakeClock:
    """The recorders' clock: it moves only when told, so flushes happen where the caller says."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def p95_index(count: int) -> int:
    """Where the 95th percentile is in ``count`` sorted samples (the last one below 20 or so)."""
    return min(count - 1, round(0.95 * (count - 1)))


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "p50_s": round(statistics.median(ordered), 4),
        "p95_s": round(ordered[p95_index(len(ordered))], 4),
        "max_s": round(ordered[-1], 4),
    }


def whole_run_flushes(
    batches: Sequence[Sequence[PageTask]], pace: float, flush_seconds: float
) -> dict[str, Any]:
    """The flushes of a whole run by the recorders' own rule (every ``flush_seconds``), pages done
    at ``pace`` a second spread evenly over the fetch tasks, the consumer completing each page as it
    is enqueued: how many publications each task makes and how many page records they carry in all
    (a publication carries the chunks of records that changed, ``core.status_document``), and the
    JSON bytes of the summaries they publish (small, whatever the job's size)."""
    clock = FakeClock()
    sizes: dict[str, list[int]] = {}
    summary_bytes = [0]

    def counting(task: str) -> Callable[[Any], None]:
        def count(publication: Any) -> None:
            sizes.setdefault(task, []).append(sum(len(records) for records in publication.chunks.values()))
            summary_bytes[0] += len(json.dumps(publication.summary))

        return count

    fetchers = [StatusRecorder(counting(f"fetch[{i}]"), flush_seconds, clock) for i in range(len(batches))]
    consumer = StatusRecorder(counting("consumer"), flush_seconds, clock)
    longest = max(len(batch) for batch in batches)
    step = len(batches) / pace  # one page of each fetch task per step
    for position in range(longest):
        clock.now += step
        for recorder, batch in zip(fetchers, batches, strict=True):
            if position < len(batch):
                page = batch[position].page_id
                recorder.mark(page, PageState.ENQUEUED)
                consumer.mark(page, PageState.SUCCESSFULLY_COMPLETED)
    for recorder in [*fetchers, consumer]:
        recorder.flush()
    fetch_sizes = [flushes for task, flushes in sizes.items() if task != "consumer"]
    return {
        "seconds": round(longest * step),
        "fetch_flushes_per_task": round(statistics.mean(len(flushes) for flushes in fetch_sizes)),
        "fetch_records_written": sum(sum(flushes) for flushes in fetch_sizes),
        "consumer_flushes": len(sizes["consumer"]),
        "consumer_records_written": sum(sizes["consumer"]),
        "summary_bytes_written": summary_bytes[0],
    }
