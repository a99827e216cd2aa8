"""Benchmark: the report step's memory when it merges a large job's page statuses.

The report merges every page record a run published (the fetch tasks' and the consumer's detail
chunks, from XCom) and the same tasks' S3 checkpoints. Until 2026-12-08 it read all of them into
lists first, then merged; now it merges them a chunk at a time. This script builds the chunks of a
100,000-page job as the tasks publish them (five fetch tasks, one consumer; JSON text per
250-page chunk) and merges them both ways, each in a fresh process, and reports the peak RSS.
No Airflow, no S3: it measures the merge alone (a report task process starts at about 180 MB).

    .venv/bin/python bench/report_merge_memory.py [--pages 100000]
"""

from __future__ import annotations

import argparse
import itertools
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

from api_poller.core.lifecycle import merge_page_statuses  # noqa: E402
from api_poller.core.status_document import CHUNK_PAGES, encode_chunk, read_chunk  # noqa: E402

JOB = "manual__2026-12-08T01_45_40.093971_00_00"
FETCH_TASKS = 5


def record(task: int, number: int) -> dict[str, object]:
    page = f"page-{number:06d}"
    at = 1.8e9 + number
    if task < FETCH_TASKS:
        message_id = "baa9e34d-4728-4e24-b536-f87e88959fa1"
        raw_key = f"jobs/{JOB}/raw/{page}.json"
        return {"state": "Enqueued", "at": at, "attempts": 1, "raw_key": raw_key, "message_id": message_id}
    done = {"state": "SuccessfullyCompleted", "at": at, "records": 100, "receives": 1}
    return {**done, "processed_key": f"jobs/{JOB}/records/{page}.ndjson"}


def published_chunks(pages: int) -> Iterator[str]:
    """Every detail chunk of the job, as the tasks publish them (the consumer covers every page)."""
    share = pages // FETCH_TASKS
    for task in range(FETCH_TASKS + 1):
        numbers = range(pages) if task == FETCH_TASKS else range(task * share, (task + 1) * share)
        for start in range(numbers.start, numbers.stop, CHUNK_PAGES):
            end = min(start + CHUNK_PAGES, numbers.stop)
            yield encode_chunk({f"page-{n:06d}": record(task, n) for n in range(start, end)})


def measure(way: str, pages: int) -> None:
    xcoms = (read_chunk(text) for text in published_chunks(pages))
    checkpoints = (read_chunk(text) for text in published_chunks(pages))
    if way == "all-at-once":  # the report before: both readings held in lists, then merged
        merged = merge_page_statuses([*list(xcoms), *list(checkpoints)])
    else:
        merged = merge_page_statuses(itertools.chain(xcoms, checkpoints))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"| {way} | {len(merged):,} | {peak:.0f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--pages", type=int, default=100_000)
    parser.add_argument("--way", choices=("all-at-once", "chunk-at-a-time"))
    args = parser.parse_args()
    if args.way:
        measure(args.way, args.pages)
        return 0
    print("| merge | pages | peak RSS MB |\n| --- | ---: | ---: |", flush=True)
    for way in ("all-at-once", "chunk-at-a-time"):
        subprocess.run([sys.executable, __file__, "--pages", str(args.pages), "--way", way], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
