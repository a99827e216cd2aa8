"""The page lifecycle, recorded through XCom, and the job progress computed from it.

Every task that touches pages publishes one XCom (key ``page_status``) mapping page id to its
latest record in that task. A page's status across the run is its most advanced record over all
tasks, so progress can be computed at any moment from whatever has been published so far.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any


class PageState(enum.StrEnum):
    STARTED = "Started"
    PAYLOAD_SAVED = "PayloadSaved"
    ENQUEUED = "Enqueued"
    SUCCESSFULLY_COMPLETED = "SuccessfullyCompleted"
    FAILED_TO_COMPLETE = "FailedToComplete"

    @property
    def rank(self) -> int:
        """How far along the lifecycle the state is; both outcomes are final."""
        return _RANK[self]

    @property
    def is_final(self) -> bool:
        return self in (PageState.SUCCESSFULLY_COMPLETED, PageState.FAILED_TO_COMPLETE)


_RANK = {
    PageState.STARTED: 0,
    PageState.PAYLOAD_SAVED: 1,
    PageState.ENQUEUED: 2,
    PageState.SUCCESSFULLY_COMPLETED: 3,
    PageState.FAILED_TO_COMPLETE: 3,
}

PROGRESS_FIELDS = [state.value for state in PageState]

StatusRecord = dict[str, Any]


def _order(record: Mapping[str, Any]) -> tuple[int, float]:
    # A later final record wins over an earlier one (a redriven page can succeed after failing).
    return PageState(record["state"]).rank, float(record.get("at", 0.0))


def merge_page_statuses(
    published: Iterable[Mapping[str, Mapping[str, Any]] | None],
) -> dict[str, StatusRecord]:
    """Each page's most advanced record across the ``page_status`` XComs of a run.

    Details the winning record lacks (fetch attempts, the raw key, ...) are kept from the others.
    """
    latest: dict[str, StatusRecord] = {}
    for statuses in published:
        for page, record in (statuses or {}).items():
            current = latest.get(page)
            if current is None:
                latest[page] = dict(record)
            elif _order(record) >= _order(current):
                latest[page] = {**current, **record}
            else:
                latest[page] = {**record, **current}
    return latest


def summarize(latest: Mapping[str, Mapping[str, Any]], total: int) -> dict[str, int]:
    """The seed's progress document: pages per state, each counted once, and the planned total."""
    counts = dict.fromkeys(PROGRESS_FIELDS, 0)
    for record in latest.values():
        counts[PageState(record["state"]).value] += 1
    counts["Total"] = total
    return counts


# Each publication rewrites the task's whole record map (one XCom row): past a few thousand pages
# that costs the api-server and the database more than the progress is worth, so a task with many
# pages publishes less often (10,000 pages: every 5 s).
RECORDS_PER_SECOND_OF_INTERVAL = 2000


class StatusRecorder:
    """Collects one task's page records and publishes them, at most every ``interval`` seconds
    (longer for tasks with thousands of pages, see RECORDS_PER_SECOND_OF_INTERVAL).

    ``floor`` is what an earlier try of the same task instance last published (its checkpoint):
    every publication is merged over it, so a page that reached a state never falls back while
    this try redoes it (it stays there, or moves on). ``checkpoint`` is called with each published
    document, to keep the floor for the next try. The try's own records (``records``,
    ``state_of``) are its own work only.
    """

    def __init__(
        self,
        publish: Callable[[dict[str, StatusRecord]], None],
        interval: float = 1.0,
        clock: Callable[[], float] = time.time,
        *,
        floor: Mapping[str, Mapping[str, Any]] | None = None,
        checkpoint: Callable[[dict[str, StatusRecord]], None] | None = None,
    ) -> None:
        self._publish = publish
        self._interval = interval
        self._clock = clock
        self._floor = floor or {}
        self._checkpoint = checkpoint
        self._records: dict[str, StatusRecord] = {}
        self._dirty = bool(self._floor)  # an inherited floor is republished at the first flush
        self._last_published = float("-inf")

    def mark(self, page: str, state: PageState, **details: Any) -> None:
        previous = self._records.get(page, {})
        record = {**previous, **{k: v for k, v in details.items() if v is not None}}
        record.update(state=state.value, at=self._clock())
        self._records[page] = record
        self._dirty = True
        self.flush(force=False)

    def state_of(self, page: str) -> PageState | None:
        record = self._records.get(page)
        return PageState(record["state"]) if record else None

    @property
    def records(self) -> dict[str, StatusRecord]:
        return self._records

    def document(self) -> dict[str, StatusRecord]:
        """What is published: this try's records merged over the floor."""
        if not self._floor:
            return dict(self._records)
        return merge_page_statuses([self._floor, self._records])

    def flush(self, force: bool = True) -> None:
        now = self._clock()
        pages = max(len(self._records), len(self._floor))
        interval = max(self._interval, pages / RECORDS_PER_SECOND_OF_INTERVAL)
        if not self._dirty or (not force and now - self._last_published < interval):
            return
        document = self.document()
        self._publish(document)
        if self._checkpoint is not None:
            self._checkpoint(document)
        self._dirty = False
        self._last_published = now
