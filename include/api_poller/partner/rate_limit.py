"""A request-rate cap for one fetch task, that slows down on a 429 and hears the job's other tasks.

``RateLimiter.acquire()`` is awaited before every request of a task: requests start at most
``rate`` per second (evenly spaced), and not at all while the limiter is paused. A 429 calls
``throttled(retry_after)``: every request of the task waits (Retry-After, else a second), the rate
is halved (down to a floor), then each later success wins back a twentieth of the cap (additive
increase, multiplicative decrease, as TCP does), so the API is not hit at full speed again at once.

A job's rate is split over its fetch tasks (``core.planning.share_rate``), each in its own process:
a 429 seen by one is published through a ``SlowDownSignal`` (an S3 object, see
``api_poller.aws.slow_down``) that the others read at most every ``check_seconds``; a signal not
seen before pauses them until the same instant and halves their rate too.

Without a cap (``rate=None``) the limiter only pauses; the task's concurrency bounds it otherwise.
The clock is wall time (``time.time``), since the signal is compared across processes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

log = logging.getLogger(__name__)

DEFAULT_PAUSE_SECONDS = 1.0
MAX_PAUSE_SECONDS = 300.0
# The rate never drops below this share of the cap, and a success wins back RECOVERY_STEP of it.
MIN_RATE_FRACTION = 1 / 16
RECOVERY_STEP = 1 / 20
CHECK_SECONDS = 2.0


class SlowDownSignal(Protocol):
    """A job-wide "slow down until" instant that every fetch task of the job can read and raise.
    Both calls block (they run in a thread)."""

    def publish(self, until: float) -> None: ...

    def read(self) -> float | None: ...


class RateLimiter:
    """Spaces one task's requests, pauses them all after a 429, and shares the pause."""

    def __init__(
        self,
        rate: float | None,
        *,
        signal: SlowDownSignal | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        check_seconds: float = CHECK_SECONDS,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError(f"rate must be above 0 requests per second, got {rate}")
        self.cap = rate
        self.rate = rate
        self.paused_until = 0.0
        self._signal = signal
        self._clock = clock
        self._sleep = sleep
        self._check_seconds = check_seconds
        self._next_start = 0.0
        self._last_check = float("-inf")
        # The latest signal instant known here (published or read): an older one changes nothing.
        self._signal_seen = 0.0
        self._signal_lock: asyncio.Lock | None = None

    async def acquire(self) -> None:
        """Wait until this task may start one more request."""
        await self._check_signal()
        while True:
            now = self._clock()
            start = max(now, self._next_start, self.paused_until)
            if self.rate is not None:
                self._next_start = start + 1 / self.rate
            if start <= now:
                return
            await self._sleep(start - now)
            if self.paused_until <= self._clock():
                return
            # A 429 arrived while this request waited: its reserved slot is void; queue again.

    def succeeded(self) -> None:
        """A request got an answer that was not a 429: win back some rate."""
        if self.cap is not None and self.rate is not None and self.rate < self.cap:
            self.rate = min(self.cap, self.rate + self.cap * RECOVERY_STEP)

    async def throttled(self, retry_after: float | None) -> None:
        """A 429: pause every request of the task, lower the rate, tell the job's other tasks."""
        pause = min(MAX_PAUSE_SECONDS, retry_after if retry_after is not None else DEFAULT_PAUSE_SECONDS)
        until = self._clock() + pause
        self._slow_down(until)
        log.warning("HTTP 429: pausing requests for %.1f s; rate now %s/s", pause, self._shown_rate())
        if self._signal is not None:
            self._signal_seen = max(self._signal_seen, until)
            try:
                await asyncio.to_thread(self._signal.publish, until)
            except Exception as error:  # the pause holds here anyway; others will see a later one
                log.warning("could not publish the job's slow-down signal: %s", error)

    def _slow_down(self, until: float) -> None:
        self.paused_until = max(self.paused_until, until)
        if self.cap is not None and self.rate is not None:
            self.rate = max(self.cap * MIN_RATE_FRACTION, self.rate / 2)

    def _shown_rate(self) -> str:
        return "uncapped" if self.rate is None else f"{self.rate:.3g}"

    async def _check_signal(self) -> None:
        if self._signal is None or self._clock() - self._last_check < self._check_seconds:
            return
        if self._signal_lock is None:
            self._signal_lock = asyncio.Lock()
        async with self._signal_lock:
            if self._clock() - self._last_check < self._check_seconds:
                return  # another request read it while this one waited for the lock
            self._last_check = self._clock()
            try:
                until = await asyncio.to_thread(self._signal.read)
            except Exception as error:  # reading is advisory: never fail a request for it
                log.warning("could not read the job's slow-down signal: %s", error)
                return
            if until is not None and until > self._signal_seen:
                self._signal_seen = until
                if until > self._clock():
                    self._slow_down(until)
                    log.warning("another fetch task of the job got a 429: pausing until %.1f", until)
