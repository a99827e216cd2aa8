"""Admin endpoints for tests and demos (open whatever the auth kind, never faulted).

``POST /admin/append {"count": N}`` adds N records after the last one (later ids and
``updated_at``), e.g. between two runs of an incremental sync. ``POST /admin/reset-stats``
zeroes ``/stats``. ``POST /admin/expire-tokens`` makes every OAuth2 token issued so far expired.
"""

from __future__ import annotations

import json

from aiohttp import web

from .dataset import format_timestamp, record_id, record_updated_at
from .state import CONFIG_KEY, DATASET_KEY, STATS_KEY, TOKENS_KEY

MAX_APPEND = 1_000_000


def _bad(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


async def handle_append(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _bad('expected a JSON body such as {"count": 10}')
    count = body.get("count") if isinstance(body, dict) else None
    # bool is an int subclass: {"count": true} is not a count.
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_APPEND:
        return _bad(f'"count" must be an integer between 1 and {MAX_APPEND}')
    config = request.app[CONFIG_KEY]
    added = request.app[DATASET_KEY].append(count)
    return web.json_response(
        {
            "appended": count,
            "total_records": request.app[DATASET_KEY].size,
            "first_id": record_id(config, added[0]),
            "last_id": record_id(config, added[-1]),
            "last_updated_at": format_timestamp(record_updated_at(added[-1])),
        }
    )


async def handle_reset_stats(request: web.Request) -> web.Response:
    request.app[STATS_KEY].reset()
    return web.json_response({"status": "ok"})


async def handle_expire_tokens(request: web.Request) -> web.Response:
    return web.json_response({"expired": request.app[TOKENS_KEY].expire_all()})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/admin/append", handle_append)
    app.router.add_post("/admin/reset-stats", handle_reset_stats)
    app.router.add_post("/admin/expire-tokens", handle_expire_tokens)
