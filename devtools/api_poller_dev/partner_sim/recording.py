"""A server that records every request reaching it, for credential-scope tests.

Point a next link, a redirect, a job URL or a token URL at it, then assert that nothing
secret arrived::

    with recording_server(body={"items": []}) as recorder:
        ...  # run the client against recorder.base_url
    assert not any(request.carries(secret) for request in recorder.requests)
    assert all("Authorization" not in request.headers for request in recorder.requests)

Every request, whatever its method and path, gets the same harmless JSON answer.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy

from .threaded import ThreadedApp


@dataclass(frozen=True)
class RecordedRequest:
    """One request as it arrived (``headers`` is case-insensitive, ``query`` decoded)."""

    method: str
    path: str
    query_string: str  # raw, as sent
    query: MultiDictProxy[str]
    headers: CIMultiDictProxy[str]
    body: bytes

    def carries(self, secret: str) -> bool:
        """Whether ``secret`` appears anywhere: path, query (raw or decoded), a header, the body."""
        places = [
            self.path,
            self.query_string,
            unquote_plus(self.query_string),
            *self.headers.values(),
            self.body.decode("utf-8", "replace"),
            unquote_plus(self.body.decode("utf-8", "replace")),
        ]
        return any(secret in place for place in places)


class RecordingServer:
    """Serves ``body`` (JSON) with ``status`` to everyone, recording each request.

    Use as a context manager (``with RecordingServer() as recorder``) or ``start()``/``stop()``.
    """

    def __init__(self, body: Any = None, status: int = 200, host: str = "127.0.0.1", port: int = 0) -> None:
        self._answer = json.dumps({} if body is None else body)
        self._status = status
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._server = ThreadedApp(self._build_app, host, port, name="recording-server")

    @property
    def base_url(self) -> str:
        if self._server.base_url is None:
            raise RuntimeError("the recording server is not started")
        return self._server.base_url

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the requests recorded so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    def _build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._record)
        return app

    async def _record(self, request: web.Request) -> web.Response:
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            query_string=request.query_string,
            query=MultiDictProxy(MultiDict(request.query)),
            headers=CIMultiDictProxy(CIMultiDict(request.headers)),
            body=await request.read(),
        )
        with self._lock:
            self._requests.append(recorded)
        return web.json_response(text=self._answer, status=self._status)

    def start(self) -> str:
        return self._server.start()

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> RecordingServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextmanager
def recording_server(body: Any = None, status: int = 200) -> Iterator[RecordingServer]:
    """A started ``RecordingServer``: ``.base_url`` and ``.requests``."""
    with RecordingServer(body, status) as recorder:
        yield recorder
