"""A task log line that says how far a step is: 'pages done / total, pages/s'."""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)


class ProgressLog:
    """Logs 'pages done / total, pages/s' at most every ``interval`` seconds."""

    def __init__(self, what: str, total: int, interval: float = 5.0) -> None:
        self._what, self._total, self._interval = what, total, interval
        self._done = 0
        self._started = self._last = time.monotonic()

    def advance(self, count: int = 1) -> None:
        self._done += count
        now = time.monotonic()
        if self._done == self._total or now - self._last >= self._interval:
            self._last = now
            elapsed = max(now - self._started, 1e-9)
            log.info(
                "%s: %d/%d pages, %.1f pages/s", self._what, self._done, self._total, self._done / elapsed
            )
