"""How many bytes of pages a task holds in memory at once, whatever the pages' size.

A fetch or a processing worker reserves a page's size from its task's budget *before* it reads
the page into memory (the size is known from the response's headers) and releases it once the
page is saved. So a task holds at most ``capacity`` bytes of pages, however large each page is
and however many requests or workers run: the rest wait, their bodies unread (the sockets' flow
control holds them back). A page larger than the whole budget is held alone.

A body of unknown size (no Content-Length, or compressed) reserves the largest page seen so far
(the whole budget until one was seen: the first such page is read alone), and, should it turn
out larger, takes the difference without waiting: holding part of a body, it must not wait.

Waiters are served first come, first served (a large page is not overtaken forever by small
ones). A holder reserves for one page at a time and holds nothing while it waits, so holders
never wait on each other in a cycle. ``high_water`` is the most ever reserved at once: tests
assert on it, not on timing or RSS.

``AsyncByteBudget`` serves the coroutines of one event loop (the fetch tasks); ``ByteBudget``
the threads of a pool (the processing workers).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager


def _checked(capacity: int) -> int:
    if capacity < 1:
        raise ValueError(f"a byte budget needs a capacity of at least 1 byte, got {capacity}")
    return capacity


class AsyncByteBudget:
    """A byte budget shared by the coroutines of one event loop."""

    def __init__(self, capacity: int) -> None:
        self.capacity = _checked(capacity)
        self.held = 0
        self.high_water = 0
        self.largest_page = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    def estimate(self) -> int:
        """What to reserve for a body of unknown size: the largest seen so far, or everything."""
        return self.cost(self.largest_page) if self.largest_page else self.capacity

    def cost(self, size: int) -> int:
        """What a page of ``size`` bytes reserves: all of it, or the whole budget at most."""
        return min(max(size, 0), self.capacity)

    async def acquire(self, size: int) -> int:
        """Wait until ``size`` bytes fit (FIFO), reserve them; returns what was reserved."""
        amount = self.cost(size)
        if not self._waiters and self.held + amount <= self.capacity:
            self._take(amount)
            return amount
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((amount, turn))
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release(amount)  # granted just as it was cancelled: give it back
            else:
                self._waiters.remove((amount, turn))
                self._wake()  # the waiter behind it may fit now
            raise
        return amount

    def release(self, amount: int) -> None:
        self.held -= amount
        self._wake()

    def overdraw(self, amount: int) -> None:
        """Take ``amount`` more at once, even past the capacity (a body already half read)."""
        self._take(amount)

    def hold(self) -> PageHold:
        """A holder for one page at a time (see ``PageHold``)."""
        return PageHold(self)

    def _take(self, amount: int) -> None:
        self.held += amount
        self.high_water = max(self.high_water, self.held)

    def _wake(self) -> None:
        while self._waiters and self.held + self._waiters[0][0] <= self.capacity:
            amount, turn = self._waiters.popleft()
            if not turn.done():
                self._take(amount)
                turn.set_result(None)


class PageHold:
    """One page's reservation: ``reserve`` again (a retried request) first gives back the last one,
    so a holder never holds while it waits; ``release`` when the page is saved (or given up)."""

    def __init__(self, budget: AsyncByteBudget) -> None:
        self._budget = budget
        self.reserved = 0

    async def reserve(self, size: int | None) -> None:
        """Wait for room for a body of ``size`` bytes (None: unknown, see the module's notes)."""
        self.release()
        self.reserved = await self._budget.acquire(self._budget.estimate() if size is None else size)

    def grow_to(self, size: int) -> None:
        """The body read so far is ``size`` bytes: hold as much (without waiting)."""
        if size > self.reserved:
            self._budget.overdraw(size - self.reserved)
            self.reserved = size

    def settle(self, size: int) -> None:
        """The whole body is ``size`` bytes: hold that (give back what was reserved beyond it)."""
        budget = self._budget
        budget.largest_page = max(budget.largest_page, size)
        if size < self.reserved:
            budget.release(self.reserved - size)
            self.reserved = size

    def release(self) -> None:
        if self.reserved:
            reserved, self.reserved = self.reserved, 0
            self._budget.release(reserved)


class ByteBudget:
    """A byte budget shared by the threads of a pool."""

    def __init__(self, capacity: int) -> None:
        self.capacity = _checked(capacity)
        self.held = 0
        self.high_water = 0
        self._turns: deque[object] = deque()
        self._changed = threading.Condition()

    def cost(self, size: int) -> int:
        """What a page of ``size`` bytes reserves: all of it, or the whole budget at most."""
        return min(max(size, 0), self.capacity)

    @contextmanager
    def reserved(self, size: int) -> Iterator[int]:
        """Hold ``size`` bytes (waiting for them, first come first served) for the ``with`` body."""
        amount = self.cost(size)
        turn = object()
        with self._changed:
            self._turns.append(turn)
            try:
                self._changed.wait_for(lambda: self._turns[0] is turn and self.held + amount <= self.capacity)
            finally:
                self._turns.remove(turn)
                self._changed.notify_all()
            self.held += amount
            self.high_water = max(self.high_water, self.held)
        try:
            yield amount
        finally:
            with self._changed:
                self.held -= amount
                self._changed.notify_all()
