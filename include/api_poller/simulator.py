"""Simulator of the partner's paginated HTTP API (the AWS "API poller" sample).

``GET /payload?startAt=N&count=M`` answers::

    {"maxRecordsPerPage": 100, "totalRecords": T,
     "payload": [{"id": N, "payload": "<random text>"}, ...]}

with configurable latency, injected HTTP 500s and "poison" pages whose records
lack their ``id``. Every random decision is derived from ``(seed, startAt,
count, k)`` -- ``k`` being how many times that exact page was requested
before -- so a run is reproducible however concurrent requests interleave.

Run it with ``python -m api_poller.simulator --total-records 500`` or, from
tests, ``with run_in_thread(SimulatorConfig(...)) as base_url: ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import signal
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

# Short grace period for in-flight (sleeping) requests when stopping, so
# shutting down never waits for aiohttp's default of 60 s.
_SHUTDOWN_TIMEOUT_S = 0.25
# Hundreds of clients may connect at once; the default backlog (128) could
# make some of them wait for a SYN retransmit.
_BACKLOG = 1024


@dataclass(frozen=True)
class SimulatorConfig:
    """Behaviour of one simulator instance (mirrors the CLI flags).

    ``latency_ms`` is either a fixed delay or an inclusive ``(low, high)``
    range sampled uniformly; it is normalised to a tuple.
    """

    total_records: int = 10_000
    page_size: int = 100
    latency_ms: int | float | tuple[float, float] = (0, 1000)
    error_rate: float = 0.1
    seed: int = 42
    poison_pages: frozenset[int] = field(default_factory=frozenset)
    host: str = "127.0.0.1"
    port: int = 0

    def __post_init__(self) -> None:
        latency = self.latency_ms
        if isinstance(latency, (int, float)):
            latency = (latency, latency)
        low, high = latency
        # Frozen dataclass: normalise via object.__setattr__.
        object.__setattr__(self, "latency_ms", (float(low), float(high)))
        object.__setattr__(self, "poison_pages", frozenset(self.poison_pages))
        if self.total_records < 0:
            raise ValueError("total_records must be >= 0")
        if self.page_size < 1:
            raise ValueError("page_size must be >= 1")
        if not 0 <= low <= high:
            raise ValueError("latency_ms must satisfy 0 <= low <= high")
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError("error_rate must be within [0, 1]")
        if any(page < 0 for page in self.poison_pages):
            raise ValueError("poison_pages must be >= 0")


@dataclass
class SimulatorStats:
    """Counters of ``/payload`` traffic (``/health`` and ``/stats`` excluded)."""

    requests: int = 0
    errors_injected: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0  # lets client tests check their concurrency cap

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors_injected": self.errors_injected,
            "by_status": {str(code): n for code, n in sorted(self.by_status.items())},
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
        }


CONFIG_KEY = web.AppKey("config", SimulatorConfig)
STATS_KEY = web.AppKey("stats", SimulatorStats)
# How many times each (startAt, count) was requested: the ``k`` of the RNG.
ATTEMPTS_KEY = web.AppKey("attempts", Counter)


def _derived_int(*parts: object) -> int:
    # hashlib rather than hash(): str hashing is salted per process.
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def record_text(seed: int, record_id: int) -> str:
    """The deterministic pseudo-random ``payload`` text of one record."""
    return hashlib.sha256(f"record:{seed}:{record_id}".encode()).hexdigest()[:32]


def _request_rng(config: SimulatorConfig, start_at: int, count: int, attempt: int) -> random.Random:
    return random.Random(_derived_int("request", config.seed, start_at, count, attempt))


def _bad_request(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


def _parse_non_negative(request: web.Request, name: str) -> int | str:
    """The parameter's value, or an error message naming it."""
    raw = request.query.get(name)
    if raw is None:
        return f"missing query parameter {name!r}"
    # isascii+isdigit: rejects "-1", "+1", " 1", "1_0" and unicode digits.
    if not (raw.isascii() and raw.isdigit()):
        return f"query parameter {name!r} must be a non-negative integer, got {raw!r}"
    return int(raw)


def _page_body(config: SimulatorConfig, start_at: int, count: int) -> dict[str, Any]:
    end = min(start_at + min(count, config.page_size), config.total_records)
    records: list[dict[str, Any]] = []
    for record_id in range(start_at, end):
        record: dict[str, Any] = {
            "id": record_id,
            "payload": record_text(config.seed, record_id),
        }
        if record_id // config.page_size in config.poison_pages:
            del record["id"]  # envelope stays valid; downstream processing fails
        records.append(record)
    return {
        "maxRecordsPerPage": config.page_size,
        "totalRecords": config.total_records,
        "payload": records,
    }


async def _handle_payload(request: web.Request) -> web.Response:
    config = request.app[CONFIG_KEY]
    stats = request.app[STATS_KEY]
    stats.requests += 1

    start_at = _parse_non_negative(request, "startAt")
    count = _parse_non_negative(request, "count")
    for problem in (start_at, count):
        if isinstance(problem, str):
            stats.by_status[400] += 1
            return _bad_request(problem)
    assert isinstance(start_at, int) and isinstance(count, int)

    # Claim k before the first await, so it is assigned in arrival order.
    attempts = request.app[ATTEMPTS_KEY]
    attempt = attempts[start_at, count]
    attempts[start_at, count] += 1
    rng = _request_rng(config, start_at, count, attempt)
    fails = rng.random() < config.error_rate
    delay_s = rng.uniform(*config.latency_ms) / 1000

    stats.in_flight += 1
    stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
    try:
        await asyncio.sleep(delay_s)
    finally:
        stats.in_flight -= 1

    if fails:
        stats.errors_injected += 1
        stats.by_status[500] += 1
        return web.json_response({"error": "simulated failure"}, status=500)
    stats.by_status[200] += 1
    return web.json_response(_page_body(config, start_at, count))


async def _handle_health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _handle_stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATS_KEY].as_json())


def build_app(config: SimulatorConfig) -> web.Application:
    """The aiohttp application; all mutable state lives in the app itself."""
    app = web.Application()
    app[CONFIG_KEY] = config
    app[STATS_KEY] = SimulatorStats()
    app[ATTEMPTS_KEY] = Counter()
    app.router.add_get("/payload", _handle_payload)
    app.router.add_get("/health", _handle_health)
    app.router.add_get("/stats", _handle_stats)
    return app


async def _start(config: SimulatorConfig) -> tuple[web.AppRunner, str]:
    """Start serving; returns the runner and the base URL (actual port)."""
    runner = web.AppRunner(build_app(config), access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, backlog=_BACKLOG)
    await site.start()
    port = runner.addresses[0][1]
    host = f"[{config.host}]" if ":" in config.host else config.host
    return runner, f"http://{host}:{port}"


class RunningSimulator:
    """A simulator served by its own event loop in a daemon thread.

    Use as a context manager (``with RunningSimulator(cfg) as base_url``) or
    via ``start()`` / ``stop()``; ``base_url`` is set once started.
    """

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.base_url: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    def start(self, timeout: float = 10.0) -> str:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="partner-api-simulator", daemon=True
        )
        self._thread.start()
        try:
            # Errors (e.g. port in use) surface here, in the caller's thread.
            future = asyncio.run_coroutine_threadsafe(_start(self.config), self._loop)
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

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextmanager
def run_in_thread(config: SimulatorConfig | None = None) -> Iterator[str]:
    """Serve ``config`` in a background thread; yields the base URL."""
    with RunningSimulator(config) as base_url:
        yield base_url


def parse_latency(text: str) -> tuple[float, float]:
    """``"200"`` -> ``(200, 200)``; ``"0-1000"`` -> ``(0, 1000)``."""
    try:
        low, sep, high = text.partition("-")
        bounds = (float(low), float(high if sep else low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MS or LOW-HIGH, got {text!r}") from None
    if not 0 <= bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError(f"expected 0 <= LOW <= HIGH, got {text!r}")
    return bounds


def _parse_pages(text: str) -> frozenset[int]:
    try:
        pages = frozenset(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(page < 0 for page in pages):
        raise argparse.ArgumentTypeError(f"page numbers must be >= 0, got {text!r}")
    return pages


def _error_rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a float in [0, 1], got {text!r}")
    return rate


def parse_args(argv: Sequence[str] | None = None) -> SimulatorConfig:
    """Build a config from command-line flags (``sys.argv[1:]`` if None)."""
    defaults = SimulatorConfig()
    parser = argparse.ArgumentParser(
        prog="python -m api_poller.simulator", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--total-records", type=int, default=defaults.total_records)
    parser.add_argument("--page-size", type=int, default=defaults.page_size)
    parser.add_argument("--latency-ms", type=parse_latency, default="0-1000", help='"200" or "0-1000"')
    parser.add_argument("--error-rate", type=_error_rate, default=defaults.error_rate)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--poison-pages",
        type=_parse_pages,
        default=frozenset(),
        help="e.g. 3,7 (0-based)",
    )
    parser.add_argument("--host", default=defaults.host)
    parser.add_argument("--port", type=int, default=defaults.port)
    args = parser.parse_args(argv)
    try:
        return SimulatorConfig(**vars(args))
    except ValueError as exc:
        parser.error(str(exc))


async def _serve_until_signalled(config: SimulatorConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner, base_url = await _start(config)
    try:
        # Scripts and tests parse this exact line to find the port.
        print(f"partner-api simulator listening on {base_url}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    asyncio.run(_serve_until_signalled(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
