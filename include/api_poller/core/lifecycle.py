"""The page lifecycle, recorded through XCom, and the job progress computed from it.

Every task that touches pages keeps each page's latest record in that task and publishes them
(``StatusRecorder``; the format is ``core.status_document``'s: a small summary plus chunks of
records). A page's status across the run is its most advanced record over all tasks, so progress
can be computed at any moment from whatever has been published so far.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from api_poller.core.page_state import PageState
from api_poller.core.status_document import StatusIndex, checked_page_number, chunk_of

PROGRESS_FIELDS = [state.value for state in PageState]

StatusRecord = dict[str, Any]


def _order(record: Mapping[str, Any]) -> tuple[int, bool, float]:
    # Success wins over failure (a redriven page can succeed after failing; nothing fails a page
    # that succeeded), as in ``core.status_document.JobStatus``; else the later record wins.
    state = PageState(record["state"])
    return state.rank, state is PageState.SUCCESSFULLY_COMPLETED, float(record.get("at", 0.0))


def merged_record(current: Mapping[str, Any] | None, record: Mapping[str, Any]) -> StatusRecord:
    """The more advanced of two records of one page, with the details only the other has."""
    if current is None:
        return dict(record)
    if _order(record) >= _order(current):
        return {**current, **record}
    return {**record, **current}


def merge_page_statuses(
    published: Iterable[Mapping[str, Mapping[str, Any]] | None],
) -> dict[str, StatusRecord]:
    """Each page's most advanced record across the ``page_status`` XComs of a run.

    Details the winning record lacks (fetch attempts, the raw key, ...) are kept from the others.
    """
    latest: dict[str, StatusRecord] = {}
    for statuses in published:
        for page, record in (statuses or {}).items():
            latest[page] = merged_record(latest.get(page), record)
    return latest


def summarize(latest: Mapping[str, Mapping[str, Any]], total: int) -> dict[str, int]:
    """The seed's progress document: pages per state, each counted once, and the planned total."""
    counts = dict.fromkeys(PROGRESS_FIELDS, 0)
    for record in latest.values():
        counts[PageState(record["state"]).value] += 1
    counts["Total"] = total
    return counts


@dataclass(frozen=True)
class Publication:
    """What one flush publishes: the task instance's summary and the detail chunks that changed."""

    summary: dict[str, Any]
    chunks: dict[int, dict[str, StatusRecord]]

    @classmethod
    def merged(cls, publications: Iterable[Publication]) -> Publication:
        """Several publications in order as one: the last summary, every chunk at its last version."""
        summary: dict[str, Any] = {}
        chunks: dict[int, dict[str, StatusRecord]] = {}
        for publication in publications:
            summary = publication.summary
            chunks.update(publication.chunks)
        return cls(summary, chunks)


class StatusRecorder:
    """Collects one task's page records and publishes them, at most every ``interval`` seconds.

    A publication is the task's summary (a few hundred bytes, whatever the page count) and only
    the detail chunks with a page that changed since the last one (see ``core.status_document``).

    ``floor`` is what an earlier try of the same task instance last published (its checkpoint):
    every publication is merged over it, so a page that reached a state never falls back while
    this try redoes it (it stays there, or moves on). ``checkpoint`` is called with each
    publication, to keep the floor for the next try. The try's own records (``records``,
    ``state_of``) are its own work only. ``drain``, if given, is called by every forced flush: for a
    ``publish`` that only hands publications over (``adapters.status_publishing.BackgroundPublisher``),
    it returns once they are out, so a task's last flush is published before the task ends.
    """

    def __init__(
        self,
        publish: Callable[[Publication], None],
        interval: float = 1.0,
        clock: Callable[[], float] = time.time,
        *,
        floor: Mapping[str, Mapping[str, Any]] | None = None,
        checkpoint: Callable[[Publication], None] | None = None,
        drain: Callable[[], None] | None = None,
    ) -> None:
        self._publish = publish
        self._drain = drain
        self._interval = interval
        self._clock = clock
        self._floor = dict(floor or {})
        self._checkpoint = checkpoint
        self._records: dict[str, StatusRecord] = {}
        self._index = StatusIndex()
        self._chunks: dict[int, dict[str, StatusRecord]] = {}
        self._dirty_chunks: set[int] = set()
        for page, record in self._floor.items():
            self._set_view(page, dict(record))
        self._dirty = bool(self._floor)  # an inherited floor is republished at the first flush
        self._last_published = float("-inf")

    def _set_view(self, page: str, record: StatusRecord) -> None:
        chunk = chunk_of(checked_page_number(page))
        pages = self._chunks.setdefault(chunk, {})
        self._index.update(page, pages.get(page), record)
        pages[page] = record
        self._dirty_chunks.add(chunk)

    def mark(self, page: str, state: PageState, **details: Any) -> None:
        checked_page_number(page)  # before anything is recorded
        previous = self._records.get(page, {})
        record = {**previous, **{k: v for k, v in details.items() if v is not None}}
        record.update(state=state.value, at=self._clock())
        self._records[page] = record
        floor = self._floor.get(page)
        # Records are never changed once made (each mark makes a new one): the view may share it.
        self._set_view(page, merged_record(floor, record) if floor is not None else record)
        self._dirty = True
        self.flush(force=False)

    def state_of(self, page: str) -> PageState | None:
        record = self._records.get(page)
        return PageState(record["state"]) if record else None

    @property
    def records(self) -> dict[str, StatusRecord]:
        return self._records

    def document(self) -> dict[str, StatusRecord]:
        """Every page's record as published: this try's records merged over the floor."""
        return {page: dict(record) for pages in self._chunks.values() for page, record in pages.items()}

    def publication(self) -> Publication:
        """The summary and the chunks changed since the last publication (all of them, the first time)."""
        return Publication(
            summary=self._index.summary(self._chunks),
            chunks={chunk: dict(self._chunks[chunk]) for chunk in sorted(self._dirty_chunks)},
        )

    def flush(self, force: bool = True) -> None:
        now = self._clock()
        if self._dirty and (force or now - self._last_published >= self._interval):
            publication = self.publication()
            self._publish(publication)
            if self._checkpoint is not None:
                self._checkpoint(publication)
            self._dirty = False
            self._dirty_chunks.clear()
            self._last_published = now
        if force and self._drain is not None:
            self._drain()
