"""RateLimiter on a test clock: requests are spaced at the rate, a 429 pauses every waiting
request and halves the rate, successes win it back slowly, and a signal from another task counts."""

from __future__ import annotations

import asyncio

import pytest

from api_poller.partner.rate_limit import RateLimiter


class Clock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class MemorySignal:
    def __init__(self) -> None:
        self.until: float | None = None
        self.reads = 0

    def publish(self, until: float) -> None:
        self.until = max(self.until or 0, until)

    def read(self) -> float | None:
        self.reads += 1
        return self.until


def starts(limiter: RateLimiter, clock: Clock, count: int) -> list[float]:
    times: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        times.append(clock.now)

    async def main() -> None:
        await asyncio.gather(*(one() for _ in range(count)))

    asyncio.run(main())
    return sorted(times)


def test_requests_start_at_most_rate_per_second() -> None:
    clock = Clock()
    limiter = RateLimiter(4.0, clock=clock, sleep=clock.sleep)
    times = starts(limiter, clock, 8)
    assert times[-1] - times[0] == pytest.approx(7 / 4)


def test_a_429_pauses_requests_and_halves_the_rate_then_successes_win_it_back() -> None:
    clock = Clock()
    signal = MemorySignal()
    limiter = RateLimiter(10.0, clock=clock, sleep=clock.sleep, signal=signal)
    asyncio.run(limiter.throttled(3.0))
    assert limiter.rate == 5.0 and signal.until == clock.now + 3.0
    times = starts(limiter, clock, 1)
    assert times == [pytest.approx(1003.0)]
    for _ in range(5):
        limiter.succeeded()
    assert limiter.rate == pytest.approx(7.5)
    for _ in range(100):
        limiter.succeeded()
    assert limiter.rate == 10.0


def test_the_rate_never_drops_below_its_floor() -> None:
    limiter = RateLimiter(16.0)
    for _ in range(20):
        asyncio.run(limiter.throttled(0))
    assert limiter.rate == 1.0


def test_a_429_while_requests_wait_holds_them_all() -> None:
    clock = Clock()
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
    times: list[float] = []

    async def main() -> None:
        await limiter.throttled(2.0)

        async def one() -> None:
            await limiter.acquire()
            times.append(clock.now)

        await asyncio.gather(*(one() for _ in range(5)))

    asyncio.run(main())
    assert times == [pytest.approx(1002.0)] * 5


def test_a_signal_from_another_task_is_read_at_most_every_two_seconds_and_applied_once() -> None:
    clock = Clock()
    signal = MemorySignal()
    limiter = RateLimiter(8.0, clock=clock, sleep=clock.sleep, signal=signal)
    starts(limiter, clock, 4)  # 4 requests in 0.375 s: one read
    assert signal.reads == 1
    signal.publish(clock.now + 5)
    clock.now += 2
    starts(limiter, clock, 1)
    assert signal.reads == 2 and limiter.rate == 4.0 and limiter.paused_until == signal.until
    clock.now += 10
    starts(limiter, clock, 1)  # the same signal again: no second halving
    assert signal.reads == 3 and limiter.rate == 4.0


def test_an_unreadable_signal_never_fails_a_request() -> None:
    class Broken:
        def publish(self, until: float) -> None:
            raise OSError("S3 is down")

        def read(self) -> float | None:
            raise OSError("S3 is down")

    clock = Clock()
    limiter = RateLimiter(5.0, clock=clock, sleep=clock.sleep, signal=Broken())
    asyncio.run(limiter.throttled(1.0))
    assert starts(limiter, clock, 1) == [pytest.approx(1001.0)]
