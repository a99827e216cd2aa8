"""The records every endpoint serves: deterministic per seed, append-only.

Record ``i`` (its offset in the dataset) has an id (``i``, or a gappy increasing one), an
``updated_at`` that grows with ``i`` (one minute apart from 2025-01-01T00:00:00Z) and a
pseudo-random ``payload`` text. Because ids and timestamps both grow with the offset, every
filter (``updated_since``, ``min_id``, ``after``) selects a contiguous range of offsets, found by
bisection, and appending records never moves an existing one.
"""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .config import SimulatorConfig

UPDATED_AT_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
UPDATED_AT_STEP = timedelta(minutes=1)
# Where an ``endless`` API's records stop: far beyond any client's page cap, and early enough
# for ``updated_at`` to stay a valid date.
ENDLESS_RECORDS = 10**9


def derived_int(*parts: object) -> int:
    """A deterministic 64-bit integer from ``parts``."""
    # hashlib rather than hash(): str hashing is salted per process.
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def record_text(seed: int, record_id: int, size: int = 0) -> str:
    """The deterministic pseudo-random ``payload`` text of one record.

    ``size`` 0 gives the default 32 hex characters, otherwise exactly ``size``.
    """
    key = f"record:{seed}:{record_id}".encode()
    if size == 0:
        return hashlib.sha256(key).hexdigest()[:32]
    return hashlib.shake_256(key).hexdigest((size + 1) // 2)[:size]


def record_id(config: SimulatorConfig, offset: int) -> int:
    """The id of the record at ``offset``: the offset itself, or gappy ones.

    With ``non_contiguous_ids``, ``8 * offset + 1..7`` (pseudo-random gaps of
    2..14): unique and strictly increasing, never equal to the offset, and
    ``id // 8`` gives the offset back.
    """
    if not config.non_contiguous_ids:
        return offset
    return 8 * offset + 1 + derived_int("id", config.seed, offset) % 7


def record_updated_at(offset: int) -> datetime:
    """When the record at ``offset`` was last updated (grows with the offset)."""
    return UPDATED_AT_EPOCH + offset * UPDATED_AT_STEP


def format_timestamp(moment: datetime) -> str:
    """ISO-8601 in UTC with a ``Z``, e.g. ``2025-01-01T00:01:00Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class RecordFilter:
    """The incremental filters of a data request (both inclusive; None: no filter)."""

    updated_since: datetime | None = None
    min_id: int | None = None


class Dataset:
    """The configured records plus those appended since the start (``POST /admin/append``)."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.appended = 0

    @property
    def size(self) -> int:
        return self.config.total_records + self.appended

    def append(self, count: int) -> range:
        """Add ``count`` records after the last one; returns their offsets."""
        first = self.size
        self.appended += count
        return range(first, self.size)

    def view(self, record_filter: RecordFilter, *, endless: bool = False) -> range:
        """The offsets of the records matching ``record_filter``, in order."""
        end = max(self.size, ENDLESS_RECORDS) if endless else self.size
        start = 0
        if record_filter.updated_since is not None:
            start = max(
                start, bisect.bisect_left(range(end), record_filter.updated_since, key=record_updated_at)
            )
        if record_filter.min_id is not None:
            start = max(start, self.first_offset_with_id_at_least(record_filter.min_id, end))
        return range(min(start, end), end)

    def first_offset_with_id_at_least(self, min_id: int, end: int) -> int:
        return bisect.bisect_left(range(end), min_id, key=lambda offset: record_id(self.config, offset))

    def first_offset_with_id_above(self, last_id: int, end: int) -> int:
        return bisect.bisect_right(range(end), last_id, key=lambda offset: record_id(self.config, offset))

    def is_poisoned(self, offset: int) -> bool:
        return offset // self.config.page_size in self.config.poison_pages

    def seed_record(self, offset: int) -> dict[str, Any]:
        """The record as ``/payload`` serves it: ``id`` and ``payload`` (a poisoned one lacks ``id``)."""
        rid = record_id(self.config, offset)
        record: dict[str, Any] = {
            "id": rid,
            "payload": record_text(self.config.seed, rid, self.config.record_bytes),
        }
        if self.is_poisoned(offset):
            del record["id"]  # envelope stays valid; downstream processing fails
        return record

    def record(self, offset: int) -> dict[str, Any]:
        """The record as the paginated endpoints serve it: ``id``, ``updated_at``, ``payload``."""
        rid = record_id(self.config, offset)
        record: dict[str, Any] = {
            "id": rid,
            "updated_at": format_timestamp(record_updated_at(offset)),
            "payload": record_text(self.config.seed, rid, self.config.record_bytes),
        }
        if self.is_poisoned(offset):
            del record["id"]
        return record
