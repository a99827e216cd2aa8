"""Simulator of a partner's paginated HTTP API: the seed's protocol and every source paginator.

The seed's protocol (the AWS "API poller" sample), ``GET /payload?startAt=N&count=M``::

    {"maxRecordsPerPage": 100, "totalRecords": T,
     "payload": [{"id": N, "payload": "<random text>"}, ...]}

The same records (plus an ``updated_at`` that grows with the id) behind one endpoint per
pagination style a source may declare (details in ``partner_sim.paginators``)::

    GET /offset/items?offset=N&limit=M          {"data": {"items": [...]}, "meta": {"total": T}}
    GET /pages/items?page=P&per_page=S          {"results": [...], "total_records": T, "total_pages": X}
    GET /cursor/items?cursor=C&limit=M          {"items": [...], "next_cursor": "<opaque>" | null}
    GET /cursor-has-more/items?after=ID&limit=M {"records": [...], "has_more": true | false}
    GET /next-body/items?offset=N&limit=M       {"items": [...], "links": {"next": "<url>" | null}}
    GET /link/items?page=P&per_page=S           [...] + Link: <url>; rel="next" (not on the last page)

each also taking ``updated_since=<ISO-8601>`` and ``min_id=<n>`` (inclusive filters; also
``filter=updated_at>=<ISO-8601>`` / ``filter=id>=<n>``). Every data
endpoint has configurable latency, injected faults (drop, hang, 429 + ``Retry-After``, 5xx,
truncated body; see ``partner_sim.faults``), "poison" records lacking their ``id``, optional
gappy ids and large payloads, one auth kind per instance (none, basic, bearer, API key in a
header or the query, OAuth2 client credentials with ``POST /oauth/token``; see
``partner_sim.auth``) and optional misbehaviour for bad-input tests (a looping cursor, a next
link to another origin, a total that is not a number, a redirect to another origin, an API
that never ends; see ``partner_sim.config.Misbehaviour``). Every random decision is derived
from the seed and the request, so a run is reproducible however concurrent requests
interleave. ``/health``, ``/stats`` (counters, per endpoint and per page too) and
``POST /admin/append`` / ``reset-stats`` / ``expire-tokens`` are open and never faulted.

Run it with ``python -m api_poller_dev.simulator --total-records 500`` (``--help`` lists the
flags) or, from tests, ``with run_in_thread(SimulatorConfig(...)) as base_url: ...``;
``recording_server()`` (from ``partner_sim.recording``) records what reaches a second port.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from aiohttp import web
from api_poller_dev.partner_sim import admin, paginators
from api_poller_dev.partner_sim.auth import handle_token
from api_poller_dev.partner_sim.auth_tokens import Clock, TokenStore
from api_poller_dev.partner_sim.config import (
    AUTH_KINDS,
    RETRY_AFTER_HTTP_DATE,
    AuthConfig,
    Misbehaviour,
    SimulatorConfig,
    url_problem,
    valid_retry_after,
)
from api_poller_dev.partner_sim.data_endpoint import Page, data_endpoint
from api_poller_dev.partner_sim.dataset import Dataset, record_id, record_text
from api_poller_dev.partner_sim.faults import Attempts
from api_poller_dev.partner_sim.paginators import NOT_A_NUMBER
from api_poller_dev.partner_sim.params import int_param
from api_poller_dev.partner_sim.recording import RecordedRequest, RecordingServer, recording_server
from api_poller_dev.partner_sim.state import ATTEMPTS_KEY, CONFIG_KEY, DATASET_KEY, STATS_KEY, TOKENS_KEY
from api_poller_dev.partner_sim.stats import FAULT_KINDS, SimulatorStats
from api_poller_dev.partner_sim.threaded import ThreadedApp, start_app

__all__ = [
    "AUTH_KINDS",
    "FAULT_KINDS",
    "RETRY_AFTER_HTTP_DATE",
    "AuthConfig",
    "Misbehaviour",
    "RecordedRequest",
    "RecordingServer",
    "RunningSimulator",
    "SimulatorConfig",
    "SimulatorStats",
    "build_app",
    "main",
    "parse_args",
    "record_id",
    "record_text",
    "recording_server",
    "run_in_thread",
]


def _payload_page(request: web.Request) -> Page:
    """``/payload``: the seed's protocol (records without ``updated_at``, no filters)."""
    config = request.app[CONFIG_KEY]
    dataset = request.app[DATASET_KEY]
    start_at = int_param(request, "startAt")
    count = int_param(request, "count")
    served = range(start_at, min(start_at + min(count, config.page_size), dataset.size))
    total = NOT_A_NUMBER if config.misbehaviour.total_not_a_number else dataset.size

    def render() -> dict[str, Any]:
        return {
            "maxRecordsPerPage": config.page_size,
            "totalRecords": total,
            "payload": [dataset.seed_record(offset) for offset in served],
        }

    # The fault key predates the other endpoints: keeping it keeps every seed's fault pattern.
    return Page(served, (start_at, count), render)


async def _handle_health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _handle_stats(request: web.Request) -> web.Response:
    body = request.app[STATS_KEY].as_json()
    body["total_records"] = request.app[DATASET_KEY].size
    return web.json_response(body)


def build_app(config: SimulatorConfig, *, clock: Clock = time.monotonic) -> web.Application:
    """The aiohttp application; all mutable state lives in the app itself.

    ``clock`` (seconds) decides when OAuth2 tokens expire; tests may pass a fake one.
    """
    app = web.Application()
    app[CONFIG_KEY] = config
    app[STATS_KEY] = SimulatorStats()
    app[DATASET_KEY] = Dataset(config)
    app[ATTEMPTS_KEY] = Attempts()
    app[TOKENS_KEY] = TokenStore(clock)
    app.router.add_get("/payload", data_endpoint(_payload_page))
    paginators.add_routes(app)
    if config.auth.kind == "oauth2_client_credentials":
        app.router.add_post("/oauth/token", handle_token)
    admin.add_routes(app)
    app.router.add_get("/health", _handle_health)
    app.router.add_get("/stats", _handle_stats)
    return app


class RunningSimulator:
    """A simulator served by its own event loop in a daemon thread.

    Use as a context manager (``with RunningSimulator(cfg) as base_url``) or
    via ``start()`` / ``stop()``; ``base_url`` is set once started.
    """

    def __init__(self, config: SimulatorConfig | None = None, *, clock: Clock = time.monotonic) -> None:
        self.config = config or SimulatorConfig()
        self._server = ThreadedApp(
            lambda: build_app(self.config, clock=clock),
            self.config.host,
            self.config.port,
            name="partner-api-simulator",
        )

    @property
    def base_url(self) -> str | None:
        return self._server.base_url

    def start(self, timeout: float = 10.0) -> str:
        return self._server.start(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        self._server.stop(timeout)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextmanager
def run_in_thread(config: SimulatorConfig | None = None, *, clock: Clock = time.monotonic) -> Iterator[str]:
    """Serve ``config`` in a background thread; yields the base URL."""
    with RunningSimulator(config, clock=clock) as base_url:
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
    if not valid_retry_after(text):
        raise argparse.ArgumentTypeError(
            f'expected seconds (e.g. "1") or "{RETRY_AFTER_HTTP_DATE}", got {text!r}'
        )
    return text


def _url(text: str) -> str:
    problem = url_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


_AUTH_FLAGS = {
    "auth": "kind",
    "auth_login": "login",
    "auth_secret": "secret",
    "auth_header": "header",
    "auth_param": "param",
    "token_ttl_seconds": "token_ttl_seconds",
}
_MISBEHAVIOUR_FLAGS = ("loop_after_pages", "foreign_next_url", "total_not_a_number", "redirect_to", "endless")

_EPILOG = """\
endpoints (GET unless POST; the /.../items ones also take the inclusive filters updated_since=<ISO-8601>,
min_id=<n>, filter=updated_at>=<ISO-8601> and filter=id>=<n>):
  /payload?startAt=N&count=M            the seed's protocol
  /offset/items?offset=N&limit=M        {"data": {"items": [...]}, "meta": {"total": T}}
  /pages/items?page=P&per_page=S        {"results": [...], "total_records": T, "total_pages": X}
  /cursor/items?cursor=C&limit=M        {"items": [...], "next_cursor": C | null}
  /cursor-has-more/items?after=ID&limit=M  {"records": [...], "has_more": bool}
  /next-body/items?offset=N&limit=M     {"items": [...], "links": {"next": URL | null}}
  /link/items?page=P&per_page=S         [...] with a Link header, rel="next" but on the last page
  POST /oauth/token                     OAuth2 client credentials (with --auth oauth2_client_credentials)
  POST /admin/append {"count": N}       add N records (later ids and updated_at)
  POST /admin/reset-stats, POST /admin/expire-tokens, GET /stats, GET /health
"""


def parse_args(argv: Sequence[str] | None = None) -> SimulatorConfig:
    """Build a config from command-line flags (``sys.argv[1:]`` if None)."""
    defaults = SimulatorConfig()
    auth_defaults = AuthConfig()
    parser = argparse.ArgumentParser(
        prog="python -m api_poller_dev.simulator",
        description=__doc__.split("\n")[0],
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--total-records", type=int, default=defaults.total_records)
    parser.add_argument(
        "--page-size",
        type=int,
        default=defaults.page_size,
        help="/payload's maxRecordsPerPage; the other endpoints' default and largest page size",
    )
    parser.add_argument(
        "--first-page",
        type=int,
        choices=(0, 1),
        default=defaults.first_page,
        help="number of the first page of /pages/items and /link/items (default: 1)",
    )
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
    auth = parser.add_argument_group("auth (data endpoints only; one kind per instance)")
    auth.add_argument("--auth", choices=AUTH_KINDS, default=auth_defaults.kind, help="(default: none)")
    auth.add_argument(
        "--auth-login",
        default=auth_defaults.login,
        help=f"basic user / OAuth2 client id (default: {auth_defaults.login})",
    )
    auth.add_argument(
        "--auth-secret",
        default=auth_defaults.secret,
        help="basic password / bearer token / API key / OAuth2 client secret "
        f"(default: {auth_defaults.secret})",
    )
    auth.add_argument(
        "--auth-header", default=auth_defaults.header, help="api_key_header's header (default: X-API-Key)"
    )
    auth.add_argument(
        "--auth-param", default=auth_defaults.param, help="api_key_query's parameter (default: api_key)"
    )
    auth.add_argument(
        "--token-ttl-seconds",
        type=_byte_count,
        default=auth_defaults.token_ttl_seconds,
        help="lifetime of OAuth2 access tokens (default: 3600; 0: expired at once)",
    )
    bad = parser.add_argument_group("misbehaviour, for bad-input tests (all off by default)")
    bad.add_argument(
        "--loop-after-pages",
        type=_byte_count,
        default=0,
        metavar="K",
        help="page K's next cursor/link points back at page K (has-more: page K served again)",
    )
    bad.add_argument("--foreign-next-url", type=_url, metavar="URL", help="next links get this URL's origin")
    bad.add_argument("--total-not-a-number", action="store_true", help='every total is "lots"')
    bad.add_argument(
        "--redirect-to", type=_url, metavar="URL", help="302 every data request to this URL's origin"
    )
    bad.add_argument(
        "--endless", action="store_true", help="records never run out: a next cursor/link is always there"
    )
    values = vars(parser.parse_args(argv))
    try:
        auth_config = AuthConfig(**{field: values.pop(flag) for flag, field in _AUTH_FLAGS.items()})
        misbehaviour = Misbehaviour(**{flag: values.pop(flag) for flag in _MISBEHAVIOUR_FLAGS})
        return SimulatorConfig(**values, auth=auth_config, misbehaviour=misbehaviour)
    except ValueError as exc:
        parser.error(str(exc))


async def _serve_until_signalled(config: SimulatorConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner, base_url = await start_app(build_app(config), config.host, config.port)
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
