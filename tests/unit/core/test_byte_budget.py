"""The byte budgets that bound the pages a task holds: who waits, who goes, and in what order."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from api_poller.core.byte_budget import AsyncByteBudget, ByteBudget


def test_a_budget_needs_a_positive_capacity() -> None:
    with pytest.raises(ValueError, match="at least 1 byte"):
        AsyncByteBudget(0)
    with pytest.raises(ValueError, match="at least 1 byte"):
        ByteBudget(-5)


def test_what_does_not_fit_waits_until_a_holder_releases() -> None:
    async def scenario() -> list[str]:
        budget = AsyncByteBudget(10)
        order: list[str] = []
        first = await budget.acquire(6)

        async def second() -> None:
            await budget.acquire(6)
            order.append("second got room")

        waiter = asyncio.create_task(second())
        await asyncio.sleep(0)
        order.append("first releases")
        budget.release(first)
        await waiter
        assert budget.high_water == 6
        return order

    assert asyncio.run(scenario()) == ["first releases", "second got room"]


def test_a_page_larger_than_the_budget_is_held_alone() -> None:
    async def scenario() -> tuple[int, int]:
        budget = AsyncByteBudget(10)
        small = await budget.acquire(3)
        big = asyncio.create_task(budget.acquire(50))
        await asyncio.sleep(0)
        assert not big.done()
        budget.release(small)
        return await big, budget.high_water

    assert asyncio.run(scenario()) == (10, 10)


def test_waiters_are_served_first_come_first_served() -> None:
    async def scenario() -> list[int]:
        budget = AsyncByteBudget(10)
        held = await budget.acquire(9)
        served: list[int] = []

        async def wants(size: int) -> None:
            served.append(await budget.acquire(size))

        tasks = [asyncio.create_task(wants(size)) for size in (8, 1)]
        await asyncio.sleep(0)
        assert served == []  # the 1-byte request fits but waits behind the 8-byte one
        budget.release(held)
        await asyncio.gather(*tasks)
        return served

    assert asyncio.run(scenario()) == [8, 1]


def test_a_cancelled_waiter_takes_nothing_and_lets_the_next_one_in() -> None:
    async def scenario() -> int:
        budget = AsyncByteBudget(10)
        await budget.acquire(5)
        big = asyncio.create_task(budget.acquire(10))
        small = asyncio.create_task(budget.acquire(5))
        await asyncio.sleep(0)
        big.cancel()
        await asyncio.gather(big, return_exceptions=True)
        await small
        return budget.held

    assert asyncio.run(scenario()) == 10


def test_a_hold_of_unknown_size_starts_from_the_largest_page_seen_and_grows_without_waiting() -> None:
    async def scenario() -> None:
        budget = AsyncByteBudget(100)
        first = budget.hold()
        await first.reserve(None)  # nothing seen yet: the whole budget
        assert budget.held == 100
        first.settle(30)
        assert budget.held == 30 and budget.largest_page == 30
        first.release()
        second = budget.hold()
        await second.reserve(None)
        assert second.reserved == 30
        second.grow_to(40)  # the body turned out larger: taken at once
        assert budget.held == 40
        second.release()
        assert budget.held == 0

    asyncio.run(scenario())


def test_reserving_again_gives_back_the_last_reservation_first() -> None:
    async def scenario() -> int:
        budget = AsyncByteBudget(10)
        hold = budget.hold()
        await hold.reserve(7)
        await hold.reserve(8)  # a retried request: would deadlock if the 7 were still held
        return budget.held

    assert asyncio.run(scenario()) == 8


def test_threads_hold_at_most_the_capacity_together() -> None:
    budget = ByteBudget(10)
    inside: list[int] = []
    lock = threading.Lock()
    current = 0

    def worker(size: int) -> None:
        nonlocal current
        with budget.reserved(size) as amount:
            with lock:
                current += amount
                inside.append(current)
            time.sleep(0.01)
            with lock:
                current -= amount

    threads = [threading.Thread(target=worker, args=(size,)) for size in (4, 4, 4, 4, 30, 4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert max(inside) <= 10 and budget.high_water <= 10
    assert budget.held == 0
