"""Simulator of the partner's paginated HTTP API (the AWS "API poller" sample).

``GET /payload?startAt=N&count=M`` answers::

    {"maxRecordsPerPage": 100, "totalRecords": T,
     "payload": [{"id": N, "payload": "<random text>"}, ...]}

with configurable latency, injected HTTP 500s and "poison" pages whose records
lack their ``id``. Every random decision is derived from ``(seed, startAt,
count, k)`` -- ``k`` being how many times that exact page was requested
before -- so a run is reproducible however concurrent requests interleave.

Switchable faults (all off by default), at most one per ``/payload`` request,
in this precedence: ``drop`` (the connection is closed without an answer) >
``hang`` (the answer comes after ``hang_seconds``) > ``rate_limit`` (429 with
``Retry-After``) > ``server_error`` (a 5xx) > ``truncate`` (a 200 whose JSON
body is cut off; ``Content-Length`` matches the cut body). Each fault has its
own draw from the request's RNG, so enabling one never changes where another
one would fire. ``/health``, ``/stats`` and 400s for bad parameters are never
faulted. Records can also get gappy, non-offset ids and large payloads.

Run it with ``python -m api_poller_dev.simulator --total-records 500`` or, from
tests, ``with run_in_thread(SimulatorConfig(...)) as base_url: ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import random
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from aiohttp import web

# Short grace period for in-flight (sleeping) requests when stopping, so
# shutting down never waits for aiohttp's default of 60 s.
_SHUTDOWN_TIMEOUT_S = 0.25
# Hundreds of clients may connect at once; the default backlog (128) could
# make some of them wait for a SYN retransmit.
_BACKLOG = 1024


# The fault kinds, in precedence order (at most one applies to a request);
# also the keys of ``faults_injected`` in ``/stats``.
FAULT_KINDS = ("drop", "hang", "rate_limit", "server_error", "truncate")
# ``retry_after`` value asking for an HTTP-date instead of delay-seconds.
RETRY_AFTER_HTTP_DATE = "http-date"


@dataclass(frozen=True)
class SimulatorConfig:
    """Behaviour of one simulator instance (mirrors the CLI flags).

    ``latency_ms`` is either a fixed delay or an inclusive ``(low, high)``
    range sampled uniformly; it is normalised to a tuple.

    The ``*_rate`` fields are each fault's own probability per ``/payload``
    request (see the module docstring for their precedence). ``retry_after``
    is the 429s' ``Retry-After``: delay-seconds (``"1"``) or ``"http-date"``
    (an IMF-fixdate at least one second from now). ``non_contiguous_ids``
    makes record ids ``8 * offset + 1..7`` (unique, increasing, gappy) instead
    of the offset; ``record_bytes`` > 0 makes each record's ``payload`` string
    that long.
    """

    total_records: int = 10_000
    page_size: int = 100
    latency_ms: int | float | tuple[float, float] = (0, 1000)
    error_rate: float = 0.1
    seed: int = 42
    poison_pages: frozenset[int] = field(default_factory=frozenset)
    host: str = "127.0.0.1"
    port: int = 0
    status_5xx_codes: tuple[int, ...] = (500,)
    rate_limit_rate: float = 0.0
    retry_after: str = "1"
    hang_rate: float = 0.0
    hang_seconds: float = 30.0
    drop_rate: float = 0.0
    truncate_rate: float = 0.0
    non_contiguous_ids: bool = False
    record_bytes: int = 0

    def __post_init__(self) -> None:
        latency = self.latency_ms
        if isinstance(latency, (int, float)):
            latency = (latency, latency)
        low, high = latency
        # Frozen dataclass: normalise via object.__setattr__.
        object.__setattr__(self, "latency_ms", (float(low), float(high)))
        object.__setattr__(self, "poison_pages", frozenset(self.poison_pages))
        object.__setattr__(self, "status_5xx_codes", tuple(self.status_5xx_codes))
        object.__setattr__(self, "retry_after", str(self.retry_after))
        if self.total_records < 0:
            raise ValueError("total_records must be >= 0")
        if self.page_size < 1:
            raise ValueError("page_size must be >= 1")
        if not 0 <= low <= high:
            raise ValueError("latency_ms must satisfy 0 <= low <= high")
        for name in ("error_rate", "rate_limit_rate", "hang_rate", "drop_rate", "truncate_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")
        if any(page < 0 for page in self.poison_pages):
            raise ValueError("poison_pages must be >= 0")
        if not self.status_5xx_codes or not all(
            isinstance(code, int) and 500 <= code <= 599 for code in self.status_5xx_codes
        ):
            raise ValueError("status_5xx_codes must be a non-empty list of codes in 500..599")
        if not _valid_retry_after(self.retry_after):
            raise ValueError(f'retry_after must be seconds (e.g. "1") or "{RETRY_AFTER_HTTP_DATE}"')
        if not 0.0 <= self.hang_seconds < math.inf:
            raise ValueError("hang_seconds must be >= 0")
        if self.record_bytes < 0:
            raise ValueError("record_bytes must be >= 0")


def _valid_retry_after(value: str) -> bool:
    return value == RETRY_AFTER_HTTP_DATE or (value.isascii() and value.isdigit())


@dataclass
class SimulatorStats:
    """Counters of ``/payload`` traffic (``/health`` and ``/stats`` excluded).

    Faults are counted when decided, even if the client gives up before the
    answer; ``errors_injected`` counts the injected 5xx (``server_error``).
    """

    requests: int = 0
    errors_injected: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0  # lets client tests check their concurrency cap
    faults_injected: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors_injected": self.errors_injected,
            "by_status": {str(code): n for code, n in sorted(self.by_status.items())},
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "faults_injected": {kind: self.faults_injected[kind] for kind in FAULT_KINDS},
        }


CONFIG_KEY = web.AppKey("config", SimulatorConfig)
STATS_KEY = web.AppKey("stats", SimulatorStats)
# How many times each (startAt, count) was requested: the ``k`` of the RNG.
ATTEMPTS_KEY = web.AppKey("attempts", Counter)


def _derived_int(*parts: object) -> int:
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
    return 8 * offset + 1 + _derived_int("id", config.seed, offset) % 7


def _request_rng(config: SimulatorConfig, start_at: int, count: int, attempt: int) -> random.Random:
    return random.Random(_derived_int("request", config.seed, start_at, count, attempt))


@dataclass(frozen=True)
class _Plan:
    """What to do with one ``/payload`` request."""

    fault: str | None
    delay_s: float
    status_5xx: int
    cut_fraction: float  # where a truncated body is cut, in [0.25, 0.75)


def _plan_request(config: SimulatorConfig, start_at: int, count: int, attempt: int) -> _Plan:
    rng = _request_rng(config, start_at, count, attempt)
    # The first two draws predate the other faults: keeping their order keeps
    # every seed's pattern of 500s and latencies unchanged.
    error_u = rng.random()
    delay_s = rng.uniform(*config.latency_ms) / 1000
    # Always drawn, whatever the rates, so each fault's decision is independent.
    drop_u, hang_u, limit_u, truncate_u, code_u = (rng.random() for _ in range(5))
    cut_fraction = rng.uniform(0.25, 0.75)

    fault: str | None = None
    if drop_u < config.drop_rate:
        fault = "drop"
    elif hang_u < config.hang_rate:
        fault = "hang"
        delay_s = config.hang_seconds
    elif limit_u < config.rate_limit_rate:
        fault = "rate_limit"
    elif error_u < config.error_rate:
        fault = "server_error"
    elif truncate_u < config.truncate_rate:
        fault = "truncate"
    codes = config.status_5xx_codes
    status_5xx = codes[min(int(code_u * len(codes)), len(codes) - 1)]
    return _Plan(fault, delay_s, status_5xx, cut_fraction)


def _retry_after_header(config: SimulatorConfig) -> str:
    if config.retry_after != RETRY_AFTER_HTTP_DATE:
        return config.retry_after
    # HTTP-dates have whole seconds: round up so the date is >= now + 1 s.
    return formatdate(math.ceil(time.time()) + 1, usegmt=True)


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
    for offset in range(start_at, end):
        rid = record_id(config, offset)
        record: dict[str, Any] = {
            "id": rid,
            "payload": record_text(config.seed, rid, config.record_bytes),
        }
        if offset // config.page_size in config.poison_pages:
            del record["id"]  # envelope stays valid; downstream processing fails
        records.append(record)
    return {
        "maxRecordsPerPage": config.page_size,
        "totalRecords": config.total_records,
        "payload": records,
    }


async def _handle_payload(request: web.Request) -> web.StreamResponse:
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
    plan = _plan_request(config, start_at, count, attempt)
    if plan.fault is not None:
        stats.faults_injected[plan.fault] += 1
    if plan.fault == "server_error":
        stats.errors_injected += 1

    stats.in_flight += 1
    stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
    try:
        # Cancelled when the client disconnects (handler_cancellation) or the
        # server stops, so a hang never outlives its client.
        await asyncio.sleep(plan.delay_s)
    finally:
        stats.in_flight -= 1

    if plan.fault == "drop":
        if request.transport is not None:
            request.transport.close()  # the client sees the connection end, no status line
        # Never sent: writing to the closed transport fails and aiohttp drops it quietly.
        return web.Response(status=204)
    if plan.fault == "rate_limit":
        stats.by_status[429] += 1
        return web.json_response(
            {"error": "rate limited"}, status=429, headers={"Retry-After": _retry_after_header(config)}
        )
    if plan.fault == "server_error":
        stats.by_status[plan.status_5xx] += 1
        return web.json_response({"error": "simulated failure"}, status=plan.status_5xx)
    stats.by_status[200] += 1
    if plan.fault == "truncate":
        body = json.dumps(_page_body(config, start_at, count)).encode()
        cut = min(max(1, int(len(body) * plan.cut_fraction)), len(body) - 1)
        # Content-Length is that of the cut body: a complete but invalid document.
        return web.Response(body=body[:cut], content_type="application/json")
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
    # handler_cancellation: a client giving up (e.g. on a hang) cancels its handler.
    runner = web.AppRunner(
        build_app(config),
        access_log=None,
        shutdown_timeout=_SHUTDOWN_TIMEOUT_S,
        handler_cancellation=True,
    )
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


def _rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"expected a float in [0, 1], got {text!r}")
    return rate


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0.0 <= seconds < math.inf:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}")
    return seconds


def _byte_count(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return int(text)


def _parse_5xx_codes(text: str) -> tuple[int, ...]:
    try:
        codes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated status codes, got {text!r}") from None
    if not codes or not all(500 <= code <= 599 for code in codes):
        raise argparse.ArgumentTypeError(f"expected codes in 500..599, got {text!r}")
    return codes


def _retry_after(text: str) -> str:
    if not _valid_retry_after(text):
        raise argparse.ArgumentTypeError(
            f'expected seconds (e.g. "1") or "{RETRY_AFTER_HTTP_DATE}", got {text!r}'
        )
    return text


def parse_args(argv: Sequence[str] | None = None) -> SimulatorConfig:
    """Build a config from command-line flags (``sys.argv[1:]`` if None)."""
    defaults = SimulatorConfig()
    parser = argparse.ArgumentParser(
        prog="python -m api_poller_dev.simulator", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--total-records", type=int, default=defaults.total_records)
    parser.add_argument("--page-size", type=int, default=defaults.page_size)
    parser.add_argument("--latency-ms", type=parse_latency, default="0-1000", help='"200" or "0-1000"')
    parser.add_argument("--error-rate", type=_rate, default=defaults.error_rate, help="HTTP 5xx")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--poison-pages",
        type=_parse_pages,
        default=frozenset(),
        help="e.g. 3,7 (0-based)",
    )
    parser.add_argument("--host", default=defaults.host)
    parser.add_argument("--port", type=int, default=defaults.port)
    faults = parser.add_argument_group("faults (precedence: drop > hang > rate limit > 5xx > truncate)")
    faults.add_argument(
        "--status-5xx-codes",
        type=_parse_5xx_codes,
        default=defaults.status_5xx_codes,
        help='codes drawn for --error-rate, e.g. "500,502,503,504" (default: 500)',
    )
    faults.add_argument("--rate-limit-rate", type=_rate, default=defaults.rate_limit_rate, help="HTTP 429")
    faults.add_argument(
        "--retry-after",
        type=_retry_after,
        default=defaults.retry_after,
        help=f'the 429s\' Retry-After: seconds or "{RETRY_AFTER_HTTP_DATE}" (default: 1)',
    )
    faults.add_argument(
        "--hang-rate", type=_rate, default=defaults.hang_rate, help="answer after --hang-seconds"
    )
    faults.add_argument("--hang-seconds", type=_seconds, default=defaults.hang_seconds)
    faults.add_argument(
        "--drop-rate", type=_rate, default=defaults.drop_rate, help="close the connection, no answer"
    )
    faults.add_argument(
        "--truncate-rate", type=_rate, default=defaults.truncate_rate, help="200 with cut-off JSON"
    )
    faults.add_argument("--non-contiguous-ids", action="store_true", help="record ids are gappy, not offsets")
    faults.add_argument(
        "--record-bytes",
        type=_byte_count,
        default=defaults.record_bytes,
        help="length of each record's payload string (0: 32 characters)",
    )
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
