"""The status benchmark's flush schedule (the product's StatusRecorder on a moved clock) and its
latency summary."""

from __future__ import annotations

from api_poller.core.planning import PageTask
from api_poller.core.status_document import CHUNK_PAGES
from bench.harness.status_schedule import latency_summary, whole_run_flushes


def pages(first: int, count: int) -> list[PageTask]:
    return [PageTask(page=page, start_at=page * 100, count=100) for page in range(first, first + count)]


def test_a_small_task_flushes_its_whole_document_every_second() -> None:
    run = whole_run_flushes([pages(0, 10)], pace=1.0, flush_seconds=1.0)

    assert run["seconds"] == 10
    assert run["fetch_flushes_per_task"] == run["consumer_flushes"] == 10  # one page a second
    assert run["fetch_records_written"] == run["consumer_records_written"] == sum(range(1, 11))


def test_a_big_task_flushes_every_second_but_only_the_chunks_that_changed() -> None:
    run = whole_run_flushes([pages(0, 20_000)], pace=100.0, flush_seconds=1.0)

    assert run["seconds"] == 200
    assert 199 <= run["fetch_flushes_per_task"] <= 201
    # 100 pages a second touch one or two chunks of CHUNK_PAGES records: never the whole task's.
    assert run["fetch_records_written"] <= run["fetch_flushes_per_task"] * 2 * CHUNK_PAGES
    assert run["fetch_records_written"] < 3 * 20_000


def test_every_flush_publishes_a_summary_of_a_few_kilobytes_whatever_the_task_size() -> None:
    small = whole_run_flushes([pages(0, 10)], pace=1.0, flush_seconds=1.0)
    big = whole_run_flushes([pages(0, 20_000)], pace=100.0, flush_seconds=1.0)

    for run in (small, big):
        flushes = run["fetch_flushes_per_task"] + run["consumer_flushes"]
        assert 0 < run["summary_bytes_written"] / flushes < 4_000
    # The big task's summaries are counted in the run's bytes, and stay far below its records'.
    records = big["fetch_records_written"] + big["consumer_records_written"]
    assert big["summary_bytes_written"] < records * 40


def test_fetch_tasks_share_the_pace_and_the_consumer_holds_every_page() -> None:
    run = whole_run_flushes([pages(0, 50), pages(50, 50)], pace=2.0, flush_seconds=1.0)

    assert run["seconds"] == 50  # 100 pages at 2 a second
    assert run["fetch_flushes_per_task"] == 50
    # The consumer flushes at each second's first page (1, 3, 5, ... 99 records), then once more
    # at the end with all 100.
    assert run["consumer_records_written"] == sum(range(1, 100, 2)) + 100


def test_latencies_are_summarized_by_median_95th_percentile_and_slowest() -> None:
    assert latency_summary([5.0, 1.0, 2.0, 3.0, 4.0]) == {"p50_s": 3.0, "p95_s": 5.0, "max_s": 5.0}
    twenty = latency_summary([float(n) for n in range(1, 21)])
    assert twenty == {"p50_s": 10.5, "p95_s": 19.0, "max_s": 20.0}
