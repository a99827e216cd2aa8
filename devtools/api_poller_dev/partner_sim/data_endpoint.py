"""What every data request goes through, whatever its pagination style.

In order: counted; redirected (``Misbehaviour.redirect_to``); credentials checked (401); its
parameters validated into a ``Page`` (400); latency and faults (see ``faults``); the page.
Neither a 302, a 401 nor a 400 is ever delayed or faulted.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from yarl import URL

from .auth import credential_problem, unauthorized
from .dataset import record_id
from .faults import RequestKey, plan_request, retry_after_header
from .params import BadRequest
from .state import ATTEMPTS_KEY, CONFIG_KEY, STATS_KEY

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Page:
    """One validated page request: what to answer once faults are ruled out.

    ``served`` holds the dataset offsets of its records; ``key`` names the page for the
    fault RNG; ``render`` builds the JSON body (only when the page is really answered).
    """

    served: range
    key: RequestKey
    render: Callable[[], Any]
    headers: Mapping[str, str] = field(default_factory=dict)


PageBuilder = Callable[[web.Request], Page]


def request_key(request: web.Request) -> RequestKey:
    """The fault-RNG key of a request: its path and its query without credentials, sorted."""
    hidden = request.app[CONFIG_KEY].auth.credential_params
    query = sorted((name, value) for name, value in request.query.items() if name not in hidden)
    return (request.path, str(URL.build(query=query)))


def data_endpoint(build_page: PageBuilder) -> Handler:
    """An aiohttp handler serving the pages ``build_page`` describes."""

    async def handle(request: web.Request) -> web.StreamResponse:
        config = request.app[CONFIG_KEY]
        stats = request.app[STATS_KEY]
        stats.count_request(request.path)
        if config.misbehaviour.redirect_to is not None:
            stats.by_status[302] += 1
            location = str(URL(config.misbehaviour.redirect_to).origin()) + request.raw_path
            return web.json_response({"moved_to": location}, status=302, headers={"Location": location})
        problem = credential_problem(request)
        if problem is not None:
            stats.by_status[401] += 1
            return unauthorized(request, problem)
        try:
            page = build_page(request)
        except BadRequest as error:
            stats.by_status[400] += 1
            return web.json_response({"error": error.message}, status=400)
        return await _serve(request, page)

    return handle


async def _serve(request: web.Request, page: Page) -> web.StreamResponse:
    config = request.app[CONFIG_KEY]
    stats = request.app[STATS_KEY]
    # Claim k before the first await, so it is assigned in arrival order.
    plan = plan_request(config, page.key, request.app[ATTEMPTS_KEY].claim(page.key))
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
            {"error": "rate limited"}, status=429, headers={"Retry-After": retry_after_header(config)}
        )
    if plan.fault == "server_error":
        stats.by_status[plan.status_5xx] += 1
        return web.json_response({"error": "simulated failure"}, status=plan.status_5xx)
    stats.by_status[200] += 1
    text = json.dumps(page.render())
    if plan.fault == "truncate":
        body = text.encode()
        cut = min(max(1, int(len(body) * plan.cut_fraction)), len(body) - 1)
        # Content-Length is that of the cut body: a complete but invalid document.
        return web.Response(body=body[:cut], content_type="application/json", headers=page.headers)
    served = page.served
    ids = (record_id(config, served[0]), record_id(config, served[-1])) if served else None
    stats.count_page(request.path, ids)
    return web.json_response(text=text, headers=page.headers)
