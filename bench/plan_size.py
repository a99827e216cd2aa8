"""What the plan costs as a job grows: the plan XCom's size and the plan step's time, before and after
batches became page ranges, side by side in one run (no Airflow, no network).

    .venv/bin/python bench/plan_size.py [--pages 1000 10000 100000] [--repeat 5]

For each page count, with the default concurrency of 25 (so the automatic fetch-task count):

* **seed**: the plan of a job of ``pages`` x 100 records. *Before*: one ``PageTask`` dict a page
  (``plan_pages`` + ``batch_pages``, as the plan task returned it until now). *After*:
  ``pipeline.plan.plan_from_metadata`` (one ``SeedBatch`` dict a fetch task).
* **source**: an offset source with a total (page size 100) planned from its first response.
  *Before*: one request dict a page (``Paginator.plan`` + the split the plan step made). *After*:
  ``Paginator.planned_page_count`` and ``page_rule`` (one ``SourceBatch`` dict a fetch task),
  through ``fetch_task_arguments`` as the source DAG's plan task returns it.

Measured for each: the plan task's return value as JSON (what XCom stores, and what every mapped
fetch task's arguments are resolved from), the time to plan and serialize it (best of
``--repeat``), the largest fetch task's ``batch`` argument, the time a fetch task takes to turn its
batch into pages/requests and read them all, and the job API's ``planned_pages`` (decode the XCom,
answer a page count, one page lookup and a 100-page slice; before: from a dict of every page, as
``planned_pages`` returned it). Results: ``results/plan_size.md``
and ``.json``; timings are ratios of runs made side by side, on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.config import RESULTS, ROOT

sys.path[:0] = [str(ROOT / "include")]

from harness.console import log  # noqa: E402

from api_poller.core.job_request import JobRequest  # noqa: E402 - include/ is on the path now
from api_poller.core.planning import (  # noqa: E402
    ApiMetadata,
    PageTask,
    batch_pages,
    choose_fetch_tasks,
    plan_pages,
    seed_batch_pages,
    share_concurrency,
    share_rate,
    split_positions,
)
from api_poller.jobs_api.page_details import planned_pages  # noqa: E402
from api_poller.partner.auth import Origin  # noqa: E402
from api_poller.partner.paginators import PageRequest, PageResponse, base_request, paginator_for  # noqa: E402
from api_poller.partner.records import ValuePath  # noqa: E402
from api_poller.pipeline.plan import plan_from_metadata  # noqa: E402
from api_poller.pipeline.source_fetch import fetch_task_arguments  # noqa: E402
from api_poller.pipeline.source_plan import SourceBatch, batch_requests  # noqa: E402
from api_poller.sources.spec import OffsetPaginatorSpec  # noqa: E402

PAGE_SIZE = 100
CONCURRENCY = 25  # the default
URL = "http://partner.example/api/records"


# --- the plans, before and after -------------------------------------------------------------------


def seed_before(pages: int) -> list[dict[str, Any]]:
    """The seed plan task's return value as it was: every page listed."""
    metadata = ApiMetadata(total_records=pages * PAGE_SIZE, max_records_per_page=PAGE_SIZE)
    listed = plan_pages(metadata, PAGE_SIZE)
    batches = batch_pages(listed, choose_fetch_tasks(len(listed), CONCURRENCY, None))
    shares = share_concurrency(CONCURRENCY, len(batches))
    return [
        {"batch": [page.to_dict() for page in batch], "url": URL, "concurrency_per_task": share}
        for batch, share in zip(batches, shares, strict=True)
    ]


def seed_after(pages: int) -> list[dict[str, Any]]:
    """The seed plan task's return value now (dags/api_poller_dag.py packs plan_from_metadata's)."""
    metadata = ApiMetadata(total_records=pages * PAGE_SIZE, max_records_per_page=PAGE_SIZE)
    job = plan_from_metadata("bench", JobRequest(URL, PAGE_SIZE, CONCURRENCY, None), metadata)
    return [
        {"batch": batch, "url": job["url"], "concurrency_per_task": share}
        for batch, share in zip(job["batches"], job["concurrency_shares"], strict=True)
    ]


def offset_paginator(pages: int) -> tuple[Any, PageResponse]:
    """An offset source's paginator with a total, and its first response (``pages`` x 100 records)."""
    spec = OffsetPaginatorSpec(page_size=PAGE_SIZE, total_path=ValuePath.parse("total"))
    base = base_request(URL, {"status": "all"})
    paginator = paginator_for(spec, base, origin=Origin.of(URL), max_pages=10**7)
    first = paginator.first_request()
    records = [{"id": number} for number in range(PAGE_SIZE)]
    return paginator, PageResponse(first, 200, {"items": records, "total": pages * PAGE_SIZE}, records)


def _source_arguments(paginator: Any, batches: list[Any], mode: str = "planned") -> list[dict[str, Any]]:
    plan = {
        "mode": mode,
        "base_request": paginator.base.to_dict(),
        "batches": batches,
        "concurrency_shares": share_concurrency(CONCURRENCY, len(batches)),
        "rate_shares": share_rate(None, len(batches)),
    }
    return fetch_task_arguments(plan)


def source_before(pages: int) -> list[dict[str, Any]]:
    """The source plan task's return value as it was: one request dict a page."""
    paginator, first = offset_paginator(pages)
    requests = [paginator.first_request(), *(paginator.plan(first) or [])]
    tasks = choose_fetch_tasks(len(requests), CONCURRENCY, None)
    dicts = [request.to_dict() for request in requests]
    parts = split_positions(len(dicts), tasks)
    return _source_arguments(paginator, [dicts[part.start : part.stop] for part in parts])


def source_after(pages: int) -> list[dict[str, Any]]:
    """The source plan task's return value now (pipeline.source_plan.plan_source_job's batches)."""
    paginator, first = offset_paginator(pages)
    count = paginator.planned_page_count(first)
    rule = paginator.page_rule()
    tasks = choose_fetch_tasks(count, CONCURRENCY, None)
    parts = split_positions(count, tasks)
    batches = [SourceBatch(part.start + 1, part.stop, rule).to_dict() for part in parts]
    return _source_arguments(paginator, batches)


# --- what is measured ------------------------------------------------------------------------------


def best_of(repeat: int, work: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - started)
    return best, result


def seed_pages_read(entry: dict[str, Any]) -> int:
    return sum(page.count for page in seed_batch_pages(entry["batch"]))


def source_requests_read(entry: dict[str, Any]) -> int:
    return sum(len(request.full_url()) for request in batch_requests(entry["base_request"], entry["batch"]))


def job_api_read_before(stored: str) -> tuple[int, list[str]]:
    """What /tasks got from the plan before: a dict of every planned page (then its count, one
    page and a 100-page slice from it)."""
    planned = dict(planned_pages(json.loads(stored)))
    return len(planned), [planned["page-000005"]["FetchMapIndex"], *sorted(planned)[:100]]


def job_api_read_after(stored: str) -> tuple[int, list[str]]:
    """The same from the compact view: count, one page, a 100-page slice by position."""
    planned = planned_pages(json.loads(stored))
    return planned.count, [planned["page-000005"]["FetchMapIndex"], *planned.page_ids(0, 100)]


def measure(
    kind: str,
    pages: int,
    build: Callable[[int], list[dict[str, Any]]],
    api_read: Callable[[str], tuple[int, list[Any]]],
    repeat: int,
) -> dict[str, Any]:
    seconds, stored = best_of(repeat, lambda: json.dumps(build(pages)))
    plan = json.loads(stored)
    largest = max(plan, key=lambda entry: len(json.dumps(entry["batch"])))
    read = seed_pages_read if kind == "seed" else source_requests_read
    expand_seconds, _ = best_of(repeat, lambda: read(json.loads(json.dumps(largest))))
    api_seconds, (count, _) = best_of(repeat, lambda: api_read(stored))
    assert count == pages, (kind, pages, count)
    return {
        "plan_bytes": len(stored),
        "plan_seconds": seconds,
        "fetch_tasks": len(plan),
        "largest_batch_bytes": len(json.dumps(largest["batch"])),
        "largest_batch_pages": len(seed_batch_pages(largest["batch"])) if kind == "seed" else None,
        "expand_seconds": expand_seconds,
        "job_api_seconds": api_seconds,
    }


def same_pages(pages: int) -> None:
    """The after plan makes exactly the before plan's pages and requests (the benchmark checks what it
    compares)."""
    before, after = seed_before(pages), seed_after(pages)
    assert [list(seed_batch_pages(e["batch"])) for e in after] == [
        [PageTask.from_dict(p) for p in e["batch"]] for e in before
    ]
    before, after = source_before(pages), source_after(pages)
    assert [list(batch_requests(e["base_request"], e["batch"])) for e in after] == [
        [PageRequest.from_dict(r) for r in e["batch"]] for e in before
    ]


def render(results: dict[str, Any], load: tuple[float, float, float], repeat: int) -> str:
    lines = [
        "# Plan size: the plan XCom and the plan step as a job grows",
        "",
        f"`bench/plan_size.py --repeat {repeat}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"load average at the start {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} on {os.cpu_count()} cores "
        "(shared). Default concurrency 25, page size 100, automatic fetch-task count. Times are the best "
        f"of {repeat}, before and after measured side by side in this run: read the ratios.",
        "",
        "*Before*: one dict a page in the plan (seed `PageTask`s, source page requests). *After*: one page "
        "range a fetch task (seed `SeedBatch`; source `SourceBatch` = first/last page + the paginator's "
        "`PageRule`).",
        "",
        "| plan | pages | fetch tasks | plan XCom before | after | plan step before | after | ratio |"
        " largest `batch` argument before | after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in ("seed", "source"):
        for pages, pair in results[kind].items():
            before, after = pair["before"], pair["after"]
            lines.append(
                f"| {kind} | {int(pages):,} | {after['fetch_tasks']} | {_bytes(before['plan_bytes'])} | "
                f"{_bytes(after['plan_bytes'])} | {before['plan_seconds'] * 1000:.1f} ms | "
                f"{after['plan_seconds'] * 1000:.2f} ms | "
                f"{before['plan_seconds'] / after['plan_seconds']:.0f}x | "
                f"{_bytes(before['largest_batch_bytes'])} | {_bytes(after['largest_batch_bytes'])} |"
            )
    lines += [
        "",
        "Reading it back: a fetch task turning its `batch` into pages/requests and reading them all (the "
        "largest batch), and the job API's `planned_pages` per `/tasks` call: decode the plan XCom, count "
        "the pages, look one up, take a 100-page slice (before: through a dict of every page, which "
        "`planned_pages` returned; after: the compact `PlannedPages` view).",
        "",
        "| plan | pages | fetch task expand before | after | job API planned_pages before | after | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in ("seed", "source"):
        for pages, pair in results[kind].items():
            before, after = pair["before"], pair["after"]
            lines.append(
                f"| {kind} | {int(pages):,} | {before['expand_seconds'] * 1000:.1f} ms | "
                f"{after['expand_seconds'] * 1000:.1f} ms | {before['job_api_seconds'] * 1000:.1f} ms | "
                f"{after['job_api_seconds'] * 1000:.2f} ms | "
                f"{before['job_api_seconds'] / after['job_api_seconds']:.0f}x |"
            )
    lines += [
        "",
        "The plan XCom after grows only by the digits of its page numbers; a fetch task still makes every "
        "page it fetches (the expansion reads them one at a time instead of decoding a list first), so "
        "its expansion time stays proportional to its pages.",
    ]
    return "\n".join(lines) + "\n"


def _bytes(count: int) -> str:
    if count >= 1_000_000:
        return f"{count / 1_000_000:.1f} MB"
    if count >= 10_000:
        return f"{count / 1000:.0f} KB"
    return f"{count:,} B"


PLANS = (("seed", seed_before, seed_after), ("source", source_before, source_after))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "plan_size")
    args = parser.parse_args()
    load = os.getloadavg()
    results: dict[str, Any] = {"seed": {}, "source": {}}
    for pages in args.pages:
        same_pages(min(pages, 10_000))
        for kind, before, after in PLANS:
            log(f"{kind}: {pages:,} pages")
            results[kind][str(pages)] = {
                "before": measure(kind, pages, before, job_api_read_before, args.repeat),
                "after": measure(kind, pages, after, job_api_read_after, args.repeat),
            }
    results["load_average"] = load
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(render(results, load, args.repeat))
    log(f"wrote {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
