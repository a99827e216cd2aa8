"""Serving an aiohttp app from its own event loop in a daemon thread (for tests and scripts)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from aiohttp import web

# Short grace period for in-flight (sleeping) requests when stopping, so
# shutting down never waits for aiohttp's default of 60 s.
SHUTDOWN_TIMEOUT_S = 0.25
# Hundreds of clients may connect at once; the default backlog (128) could
# make some of them wait for a SYN retransmit.
BACKLOG = 1024


async def start_app(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, str]:
    """Start serving ``app``; returns the runner and the base URL (actual port)."""
    # handler_cancellation: a client giving up (e.g. on a hang) cancels its handler.
    runner = web.AppRunner(
        app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S, handler_cancellation=True
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=BACKLOG)
    await site.start()
    actual_port = runner.addresses[0][1]
    shown_host = f"[{host}]" if ":" in host else host
    return runner, f"http://{shown_host}:{actual_port}"


class ThreadedApp:
    """An app built by ``make_app`` (in the serving loop), served in a daemon thread.

    ``start()`` returns the base URL (also ``base_url``); ``stop()`` is idempotent.
    """

    def __init__(self, make_app: Callable[[], web.Application], host: str, port: int, name: str) -> None:
        self._make_app = make_app
        self._host, self._port, self._name = host, port, name
        self.base_url: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    async def _start(self) -> tuple[web.AppRunner, str]:
        return await start_app(self._make_app(), self._host, self._port)

    def start(self, timeout: float = 10.0) -> str:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=self._name, daemon=True)
        self._thread.start()
        try:
            # Errors (e.g. port in use) surface here, in the caller's thread.
            future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
            self._runner, self.base_url = future.result(timeout)
        except BaseException:
            self.stop()
            raise
        return self.base_url

    def stop(self, timeout: float = 10.0) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        if self._runner is not None:
            cleanup = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop)
            cleanup.result(timeout)
            self._runner = None
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        loop.close()
