"""Turn the partner API's metadata into the pages to fetch, grouped into task batches.

A fetch task's batch travels through XCom as a ``SeedBatch``: its first and last page numbers and
what makes each page (page size, total records), so the plan's size does not grow with the job's
page count. Plans made before that carried one ``PageTask`` dict a page; ``seed_batch_pages`` and
``batch_page_numbers`` read both (a run planned before an upgrade is still read).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, overload

from api_poller.core.errors import InvalidJobRequest, InvalidMetadata

# A page past this many records is refused as absurd rather than planned.
MAX_TOTAL_RECORDS = 1_000_000_000


@dataclass(frozen=True)
class ApiMetadata:
    total_records: int
    max_records_per_page: int


@dataclass(frozen=True)
class PageTask:
    """One page of the partner API: the records [start_at, start_at + count)."""

    page: int
    start_at: int
    count: int

    @property
    def page_id(self) -> str:
        return page_id(self.page)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PageTask:
        return cls(page=int(data["page"]), start_at=int(data["start_at"]), count=int(data["count"]))


def page_id(page: int) -> str:
    """The page's id in statuses, S3 keys and messages: zero-padded so it sorts naturally."""
    return f"page-{page:06d}"


def _positive_int(document: Mapping[str, Any], field: str) -> int:
    if field not in document:
        raise InvalidMetadata(f"metadata has no '{field}'")
    value = document[field]
    # bool is an int subclass; a JSON true must not plan one page.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidMetadata(f"metadata '{field}' must be an integer, got {value!r}")
    if value <= 0:
        raise InvalidMetadata(f"metadata '{field}' must be positive, got {value}")
    return value


def parse_metadata(document: object) -> ApiMetadata:
    """Validate the metadata part of a partner API response."""
    if not isinstance(document, Mapping):
        raise InvalidMetadata(f"metadata response must be a JSON object, got {type(document).__name__}")
    total = _positive_int(document, "totalRecords")
    per_page = _positive_int(document, "maxRecordsPerPage")
    if total > MAX_TOTAL_RECORDS:
        raise InvalidMetadata(f"metadata 'totalRecords' {total} exceeds the limit of {MAX_TOTAL_RECORDS}")
    return ApiMetadata(total_records=total, max_records_per_page=per_page)


def choose_page_size(metadata: ApiMetadata, requested: int | None) -> int:
    """The page size to use: the API's maximum unless the job asks for smaller pages."""
    if requested is None:
        return metadata.max_records_per_page
    if isinstance(requested, bool) or not isinstance(requested, int) or requested <= 0:
        raise InvalidJobRequest(f"page_size must be a positive integer, got {requested!r}")
    if requested > metadata.max_records_per_page:
        raise InvalidJobRequest(
            f"page_size {requested} exceeds the API's maxRecordsPerPage {metadata.max_records_per_page}"
        )
    return requested


def plan_pages(metadata: ApiMetadata, page_size: int) -> list[PageTask]:
    """Every page needed to read all records, the last one possibly short."""
    return [
        PageTask(page=index, start_at=start, count=min(page_size, metadata.total_records - start))
        for index, start in enumerate(range(0, metadata.total_records, page_size))
    ]


def batch_pages(pages: list[PageTask], task_count: int) -> list[list[PageTask]]:
    """Split pages into at most ``task_count`` contiguous, near-equal batches (one per mapped task)."""
    if task_count <= 0:
        raise InvalidJobRequest(f"fetch_tasks must be a positive integer, got {task_count!r}")
    return [pages[part.start : part.stop] for part in split_positions(len(pages), task_count)]


def split_positions(count: int, task_count: int) -> list[range]:
    """Positions 0..count-1 in at most ``task_count`` contiguous, near-equal parts."""
    if task_count <= 0 or count <= 0:
        return []
    # The first ``extra`` parts take one more, so sizes differ by at most one.
    parts = min(task_count, count)
    size, extra = divmod(count, parts)
    ranges, start = [], 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        ranges.append(range(start, end))
        start = end
    return ranges


@dataclass(frozen=True)
class SeedBatch(Sequence[PageTask]):
    """Pages ``first_page``..``last_page`` of a job of ``total_records`` read ``page_size`` at a
    time: a fetch task's batch, the same size in XCom whatever its page count. Its pages are made
    as they are read (page n: the records [n * page_size, ...), the job's last page possibly short)."""

    first_page: int
    last_page: int
    page_size: int
    total_records: int

    def __post_init__(self) -> None:
        if not 0 <= self.first_page <= self.last_page or self.page_size <= 0:
            raise ValueError(f"not a batch of pages: {self.to_dict()}")
        if self.last_page * self.page_size >= self.total_records:
            raise ValueError(f"batch ends past the job's {self.total_records} records: {self.to_dict()}")

    @property
    def numbers(self) -> range:
        return range(self.first_page, self.last_page + 1)

    def page(self, number: int) -> PageTask:
        start = number * self.page_size
        return PageTask(page=number, start_at=start, count=min(self.page_size, self.total_records - start))

    def __len__(self) -> int:
        return len(self.numbers)

    @overload
    def __getitem__(self, position: int) -> PageTask: ...
    @overload
    def __getitem__(self, position: slice) -> list[PageTask]: ...
    def __getitem__(self, position: int | slice) -> PageTask | list[PageTask]:
        if isinstance(position, slice):
            return [self.page(number) for number in self.numbers[position]]
        return self.page(self.numbers[position])

    def __iter__(self) -> Iterator[PageTask]:
        return (self.page(number) for number in self.numbers)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SeedBatch:
        return cls(*(int(data[name]) for name in ("first_page", "last_page", "page_size", "total_records")))


def page_count(metadata: ApiMetadata, page_size: int) -> int:
    """How many pages ``plan_pages`` plans (the last one possibly short)."""
    return -(-metadata.total_records // page_size)


def plan_batches(metadata: ApiMetadata, page_size: int, task_count: int) -> list[SeedBatch]:
    """The pages of ``plan_pages`` in at most ``task_count`` contiguous, near-equal batches, each
    described by its page range instead of listed."""
    if task_count <= 0:
        raise InvalidJobRequest(f"fetch_tasks must be a positive integer, got {task_count!r}")
    return [
        SeedBatch(part.start, part.stop - 1, page_size, metadata.total_records)
        for part in split_positions(page_count(metadata, page_size), task_count)
    ]


def seed_batch_pages(batch: Any) -> Sequence[PageTask]:
    """A seed fetch task's pages from its ``batch`` argument: a ``SeedBatch`` dict, or the list of
    ``PageTask`` dicts of a plan made before batches were ranges."""
    if isinstance(batch, Mapping):
        return SeedBatch.from_dict(batch)
    if isinstance(batch, list):
        return [PageTask.from_dict(page) for page in batch]
    raise ValueError(f"a fetch task's batch must be a mapping or a list, got {type(batch).__name__}")


def batch_page_numbers(batch: Any) -> range:
    """The page numbers of any fetch task's batch, seed or source, as a range: a range's
    ``first_page``/``last_page``, or the first and last ``page`` of an older plan's list (those
    lists were contiguous runs of pages; a source request without a number is page 1)."""
    if isinstance(batch, Mapping):
        return range(int(batch["first_page"]), int(batch["last_page"]) + 1)
    if isinstance(batch, list):
        if not batch:
            return range(0)
        return range(int(batch[0].get("page", 1)), int(batch[-1].get("page", 1)) + 1)
    raise ValueError(f"a fetch task's batch must be a mapping or a list, got {type(batch).__name__}")


# Automatic fetch-task count: enough pages per task that task start-up (seconds) stays small
# next to the fetching, enough requests per task that a task is worth its process.
PAGES_PER_FETCH_TASK = 1000
MIN_CONCURRENCY_PER_FETCH_TASK = 5
MAX_AUTO_FETCH_TASKS = 16


def choose_fetch_tasks(total_pages: int, concurrency: int, requested: int | None) -> int:
    """How many mapped fetch tasks share the pages.

    Never more tasks than requests in flight (each task needs at least one), so the job's
    concurrency holds across tasks; ``None`` picks a bounded count from the page count.
    """
    if requested is None:
        requested = min(
            -(-total_pages // PAGES_PER_FETCH_TASK),
            max(1, concurrency // MIN_CONCURRENCY_PER_FETCH_TASK),
            MAX_AUTO_FETCH_TASKS,
        )
    return max(1, min(requested, concurrency, max(total_pages, 1)))


def share_concurrency(concurrency: int, task_count: int) -> list[int]:
    """Split the job's requests in flight over its fetch tasks: the shares add up to it exactly."""
    if task_count <= 0:
        return []
    base, extra = divmod(concurrency, task_count)
    return [max(1, base + (1 if index < extra else 0)) for index in range(task_count)]


def share_rate(requests_per_second: float | None, task_count: int) -> list[float | None]:
    """Split the job's rate cap over its fetch tasks, like its concurrency: the shares add up to
    the cap (None: no cap, for every task)."""
    if task_count <= 0:
        return []
    if requests_per_second is None:
        return [None] * task_count
    return [requests_per_second / task_count] * task_count
