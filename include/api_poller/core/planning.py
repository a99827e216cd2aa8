"""Turn the partner API's metadata into the list of pages to fetch, grouped into task batches."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from api_poller.core.errors import InvalidJobRequest, InvalidMetadata

Item = TypeVar("Item")

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
    if not pages:
        return []
    # The first ``extra`` batches take one page more, so sizes differ by at most one.
    count = min(task_count, len(pages))
    size, extra = divmod(len(pages), count)
    batches, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        batches.append(pages[start:end])
        start = end
    return batches


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


def split_evenly(items: Sequence[Item], task_count: int) -> list[list[Item]]:
    """Contiguous, near-equal parts (sizes differ by at most one), at most ``task_count`` of them."""
    if task_count <= 0 or not items:
        return []
    count = min(task_count, len(items))
    size, extra = divmod(len(items), count)
    parts, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        parts.append(list(items[start:end]))
        start = end
    return parts
