"""A job's partner pages as the job API lists them: planned, touched by tasks, where their data is."""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import ItemsView, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate
from typing import Any

from api_poller.core.keys import processed_key, s3_uri
from api_poller.core.lifecycle import PageState
from api_poller.core.page_bits import pages_mask, range_mask
from api_poller.core.planning import PageTask, batch_page_numbers, page_id, seed_batch_pages
from api_poller.jobs_api.models import PENDING, PageDetail


def _timestamp(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(value), tz=UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class _FetchTaskPages:
    """One fetch task's planned page numbers; a seed task's pages also tell StartAt and Count."""

    map_index: int
    numbers: range
    seed_pages: Sequence[PageTask] | None


class PlannedPages(Mapping[str, Mapping[str, Any]]):
    """A job's planned pages, read from the plan's page ranges without listing them.

    Cheap (the cost grows with the fetch tasks, not the pages): ``count`` (``len``), ``page_id in
    planned``, ``planned[page_id]`` (StartAt, Count, FetchMapIndex), ``fetch_map_index(number)`` and
    ``page_ids(start, stop)`` (a slice by position, in page order). Iterating goes through every
    page id in page order, lazily; it is a Mapping, so it compares equal to the dict it stands for.
    A seed page has a ``start_at`` and a ``count``; a source's page has only its number (its offset,
    page or cursor is in its query), so StartAt and Count are None for it. A walked job plans its
    first page only: the others appear as their statuses are recorded.
    """

    def __init__(self, tasks: Sequence[_FetchTaskPages]) -> None:
        self._tasks = sorted((task for task in tasks if task.numbers), key=lambda task: task.numbers.start)
        self._firsts = [task.numbers.start for task in self._tasks]
        # Position of each task's first page among all planned pages.
        self._offsets = list(accumulate((len(task.numbers) for task in self._tasks), initial=0))

    @property
    def count(self) -> int:
        return self._offsets[-1]

    def __len__(self) -> int:
        return self.count

    def mask(self) -> int:
        """Every planned page as one bitmap (``core.page_bits``), built from the ranges."""
        mask = 0
        for task in self._tasks:
            numbers = task.numbers
            if numbers.step == 1:
                mask |= range_mask(numbers.start, numbers.stop - 1)
            else:
                mask |= pages_mask(numbers)
        return mask

    def _task_of(self, number: int) -> _FetchTaskPages | None:
        index = bisect_right(self._firsts, number) - 1
        if index < 0 or number not in self._tasks[index].numbers:
            return None
        return self._tasks[index]

    def fetch_map_index(self, number: int) -> int | None:
        """The map index of the fetch task that fetches page ``number``; None if it is not planned."""
        task = self._task_of(number)
        return None if task is None else task.map_index

    def __contains__(self, page: object) -> bool:
        number = _page_number(page)
        return number is not None and self._task_of(number) is not None

    def __getitem__(self, page: str) -> Mapping[str, Any]:
        number = _page_number(page)
        task = None if number is None else self._task_of(number)
        if task is None or number is None:
            raise KeyError(page)
        return _details(task, number - task.numbers.start)

    def __iter__(self) -> Iterator[str]:
        return (page_id(number) for task in self._tasks for number in task.numbers)

    def items(self) -> ItemsView[str, Mapping[str, Any]]:
        return _PlannedItems(self)

    def _pairs(self) -> Iterator[tuple[str, Mapping[str, Any]]]:
        """Every (page id, details) in page order, without looking each page up again."""
        for task in self._tasks:
            for position, number in enumerate(task.numbers):
                yield page_id(number), _details(task, position)

    def page_ids(self, start: int = 0, stop: int | None = None) -> list[str]:
        """The planned page ids at positions [start, stop) in page order, like a list slice's
        (non-negative bounds)."""
        stop = self.count if stop is None else min(stop, self.count)
        ids: list[str] = []
        index = max(bisect_right(self._offsets, start) - 1, 0)
        while start < stop and index < len(self._tasks):
            task, first = self._tasks[index], self._offsets[index]
            numbers = task.numbers[start - first : stop - first]
            ids.extend(page_id(number) for number in numbers)
            start, index = first + len(task.numbers), index + 1
        return ids


class _PlannedItems(ItemsView[str, Mapping[str, Any]]):
    """A plan's items, iterated in page order without a lookup per page."""

    def __init__(self, planned: PlannedPages) -> None:
        super().__init__(planned)
        self._planned = planned

    def __iter__(self) -> Iterator[tuple[str, Mapping[str, Any]]]:
        return self._planned._pairs()


def _details(task: _FetchTaskPages, position: int) -> dict[str, Any]:
    """StartAt, Count and FetchMapIndex of the task's page at ``position``."""
    if task.seed_pages is None:
        return {"StartAt": None, "Count": None, "FetchMapIndex": task.map_index}
    planned = task.seed_pages[position]
    return {"StartAt": planned.start_at, "Count": planned.count, "FetchMapIndex": task.map_index}


_PAGE_ID = re.compile(r"page-(\d+)")


def _page_number(page: object) -> int | None:
    """The number of a page id, None for anything else ("page-7" is not "page-000007")."""
    match = _PAGE_ID.fullmatch(page) if isinstance(page, str) else None
    number = int(match.group(1)) if match else None
    return number if number is not None and page_id(number) == page else None


def _is_seed(batch: Any) -> bool:
    """A seed batch makes its pages' record ranges; a source's has page requests instead."""
    return "page_size" in batch if isinstance(batch, Mapping) else "start_at" in batch[0]


def planned_pages(plan_output: Any) -> PlannedPages:
    """The job's planned pages from the plan task's return value (one entry per fetch task, its
    ``batch`` a page range, or the page list of a plan made before batches were ranges)."""
    tasks = []
    for map_index, entry in enumerate(plan_output if isinstance(plan_output, list) else []):
        batch = (entry or {}).get("batch")
        if not batch:
            continue
        seed = seed_batch_pages(batch) if _is_seed(batch) else None
        tasks.append(_FetchTaskPages(map_index, batch_page_numbers(batch), seed))
    return PlannedPages(tasks)


def page_detail(
    job_id: str,
    page: str,
    plan: Mapping[str, Any],
    record: Mapping[str, Any],
    state: str,
    raw_bucket: str,
    processed_bucket: str,
) -> PageDetail:
    """One page as the job API lists it: its ``plan`` entry (``planned_pages``), its latest
    ``record`` (details) and its ``state`` in the job (PENDING if no task recorded it)."""
    done_key = record.get("processed_key") or (
        processed_key(job_id, page) if state == PageState.SUCCESSFULLY_COMPLETED else None
    )
    return PageDetail(
        PageId=page,
        StartAt=plan.get("StartAt"),
        Count=plan.get("Count"),
        FetchMapIndex=plan.get("FetchMapIndex"),
        State=state,
        UpdatedAt=_timestamp(record.get("at")),
        Attempts=_int_or_none(record.get("attempts")),
        Receives=_int_or_none(record.get("receives")),
        Records=_int_or_none(record.get("records")),
        RawLocation=s3_uri(raw_bucket, record["raw_key"]) if record.get("raw_key") else None,
        ProcessedLocation=s3_uri(processed_bucket, done_key) if done_key else None,
        Error=record.get("error"),
        # A page redriven to success after failing keeps no failure reason.
        Reason=record.get("reason") if state == PageState.FAILED_TO_COMPLETE else None,
    )


def page_details(
    job_id: str,
    planned: Mapping[str, Mapping[str, Any]],
    statuses: Mapping[str, Mapping[str, Any]],
    raw_bucket: str,
    processed_bucket: str,
) -> list[PageDetail]:
    """Every page of ``planned`` and ``statuses`` (merged records, each with its state), in page order."""
    return [
        page_detail(
            job_id,
            page,
            planned.get(page, {}),
            statuses.get(page, {}),
            statuses.get(page, {}).get("state", PENDING),
            raw_bucket,
            processed_bucket,
        )
        for page in sorted(set(planned) | set(statuses))
    ]
