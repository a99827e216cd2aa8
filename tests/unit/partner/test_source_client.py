"""SourceClient against the simulator and a recording server on a second port: every auth kind
reaches the API, and no credential ever reaches another origin, whatever the request, next link
or redirect says. A 429 pauses the task's limiter and, through S3, the job's other tasks."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from api_poller_dev.simulator import (
    AuthConfig,
    Misbehaviour,
    SimulatorConfig,
    recording_server,
    run_in_thread,
)

from api_poller.aws.slow_down import S3SlowDownSignal
from api_poller.core.errors import AuthenticationError, CrossOriginRequest, RetriableError
from api_poller.partner.auth import credentials_for
from api_poller.partner.client import ClientOptions, RetryPolicy
from api_poller.partner.paginators import PageRequest
from api_poller.partner.rate_limit import RateLimiter
from api_poller.partner.records import RecordsPath
from api_poller.partner.source_client import SourceClient, SourcePage
from api_poller.sources.spec import AuthSpec
from tests.helpers import serve_in_thread

from ..pipeline.source_support import QUIET, Conn, run_source_job, source

LOGIN, SECRET = "sim-user", "sim-secret"
FAST = RetryPolicy(attempts=3, initial_seconds=0.01, max_seconds=0.05)
AUTH_SPECS = {
    "basic": AuthSpec(type="basic"),
    "bearer": AuthSpec(type="bearer"),
    "api_key_header": AuthSpec(type="api_key_header", header="X-API-Key"),
    "api_key_query": AuthSpec(type="api_key_query", param="api_key"),
}


def auth_spec(kind: str, base_url: str) -> AuthSpec:
    if kind == "oauth2_client_credentials":
        return AuthSpec(type=kind, token_url=f"{base_url}/oauth/token")
    return AUTH_SPECS[kind]


def leaked(requests: list[Any]) -> list[str]:
    """What credential-looking things reached the recording server."""
    found = []
    for request in requests:
        if "Authorization" in request.headers or "X-API-Key" in request.headers:
            found.append(f"{request.path}: credential header")
        if "api_key" in request.query or request.carries(SECRET):
            found.append(f"{request.path}: credential in query or body")
    return found


def fetch(
    base_url: str,
    request: PageRequest,
    *,
    kind: str = "bearer",
    records: str = "items",
    limiter: RateLimiter | None = None,
    policy: RetryPolicy = FAST,
) -> SourcePage:
    credentials = credentials_for(
        Conn(host=base_url, login=LOGIN, password=SECRET), auth_spec(kind, base_url)
    )

    async def main() -> SourcePage:
        async with aiohttp.ClientSession() as session:
            client = SourceClient(
                session,
                credentials,
                records=RecordsPath.parse(records),
                policy=policy,
                options=ClientOptions(timeout=10),
                limiter=limiter,
            )
            return await client.fetch(request)

    return asyncio.run(main())


@pytest.mark.parametrize("kind", [*AUTH_SPECS, "oauth2_client_credentials"])
def test_every_auth_kind_gets_every_record_from_an_api_that_requires_it(aws, kind: str) -> None:
    config = SimulatorConfig(total_records=35, page_size=10, auth=AuthConfig(kind=kind), **QUIET)
    with run_in_thread(config) as base_url:
        spec = replace(source("cursor"), auth=auth_spec(kind, base_url))
        outcome = run_source_job(aws, spec, Conn(host=base_url, login=LOGIN, password=SECRET))

    assert sorted(record["id"] for record in outcome.records) == list(range(35))


@pytest.mark.parametrize("kind", [*AUTH_SPECS, "oauth2_client_credentials"])
def test_wrong_credentials_are_a_clear_error_that_never_shows_the_secret(kind: str) -> None:
    config = SimulatorConfig(total_records=5, auth=AuthConfig(kind=kind, secret="the-real-one"), **QUIET)
    with run_in_thread(config) as base_url, pytest.raises(AuthenticationError) as raised:
        fetch(base_url, PageRequest(f"{base_url}/cursor/items"), kind=kind)
    assert SECRET not in str(raised.value)
    assert "refused" in str(raised.value)


@pytest.mark.parametrize("kind", list(AUTH_SPECS))
def test_a_request_to_another_origin_is_refused_before_anything_is_sent(kind: str) -> None:
    with run_in_thread(SimulatorConfig(**QUIET)) as base_url, recording_server() as elsewhere:
        with pytest.raises(CrossOriginRequest, match="refused") as raised:
            fetch(base_url, PageRequest(f"{elsewhere.base_url}/cursor/items"), kind=kind)
        assert elsewhere.requests == []
    assert elsewhere.base_url.removeprefix("http://") in str(raised.value)


@pytest.mark.parametrize("kind", list(AUTH_SPECS))
def test_a_redirect_to_another_origin_is_not_followed_and_carries_no_credential(kind: str) -> None:
    with recording_server() as elsewhere:
        config = SimulatorConfig(
            auth=AuthConfig(kind=kind, secret=SECRET),
            misbehaviour=Misbehaviour(redirect_to=elsewhere.base_url),
            **QUIET,
        )
        with run_in_thread(config) as base_url, pytest.raises(CrossOriginRequest) as raised:
            fetch(base_url, PageRequest(f"{base_url}/cursor/items"), kind=kind)
        assert elsewhere.requests == [] and leaked(elsewhere.requests) == []
    message = str(raised.value)
    assert "redirected" in message and elsewhere.base_url.removeprefix("http://") in message
    assert SECRET not in message


@pytest.mark.parametrize("kind", list(AUTH_SPECS))
def test_a_job_whose_next_links_point_elsewhere_never_delivers_a_credential_there(aws, kind: str) -> None:
    with recording_server(body={"items": [{"id": 1}]}) as elsewhere:
        config = SimulatorConfig(
            total_records=30,
            page_size=10,
            auth=AuthConfig(kind=kind, secret=SECRET),
            misbehaviour=Misbehaviour(foreign_next_url=elsewhere.base_url),
            **QUIET,
        )
        with run_in_thread(config) as base_url:
            spec = replace(source("next_url_body"), auth=AUTH_SPECS[kind])
            outcome = run_source_job(aws, spec, Conn(host=base_url, login=LOGIN, password=SECRET))
        assert leaked(elsewhere.requests) == [] and elsewhere.requests == []
    assert outcome.fetches[0]["stop_reason"] == "foreign_link"
    assert SECRET not in json.dumps(outcome.statuses)


def redirecting_app(secret: str) -> web.Application:
    """``/old`` moves to ``/new`` on the same origin, which wants the bearer token."""

    async def old(request: web.Request) -> web.Response:
        raise web.HTTPFound("/new?moved=1")

    async def new(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {secret}":
            return web.json_response({"error": "no"}, status=401)
        return web.json_response({"items": [{"id": 1}], "moved": request.query.get("moved")})

    app = web.Application()
    app.router.add_get("/old", old)
    app.router.add_get("/new", new)
    return app


def test_a_redirect_on_the_same_origin_is_followed_with_the_credentials() -> None:
    with serve_in_thread(redirecting_app(SECRET)) as base_url:
        page = fetch(base_url, PageRequest(f"{base_url}/old"))
    assert page.records == [{"id": 1}] and page.document["moved"] == "1"


def test_a_401_on_an_expired_oauth2_token_fetches_a_new_one_once() -> None:
    config = SimulatorConfig(total_records=30, auth=AuthConfig(kind="oauth2_client_credentials"), **QUIET)
    with run_in_thread(config) as base_url:
        credentials = credentials_for(
            Conn(host=base_url, login=LOGIN, password=SECRET), auth_spec(config.auth.kind, base_url)
        )

        async def main() -> list[SourcePage]:
            async with aiohttp.ClientSession() as session:
                client = SourceClient(
                    session,
                    credentials,
                    records=RecordsPath.parse("items"),
                    policy=FAST,
                    options=ClientOptions(),
                )
                first = await client.fetch(PageRequest(f"{base_url}/cursor/items"))
                await session.post(f"{base_url}/admin/expire-tokens")
                second = await client.fetch(PageRequest(f"{base_url}/cursor/items"))
                return [first, second]

        pages = asyncio.run(main())
    assert all(page.records for page in pages)
    assert credentials.token_requests == 2  # type: ignore[attr-defined]


def throttling_app(hits: list[str]) -> web.Application:
    """The first request gets a 429 with Retry-After: 1; later ones an empty page."""

    async def items(request: web.Request) -> web.Response:
        hits.append(request.path)
        if len(hits) == 1:
            return web.json_response({"error": "slow down"}, status=429, headers={"Retry-After": "1"})
        return web.json_response({"items": []})

    app = web.Application()
    app.router.add_get("/items", items)
    return app


def test_a_429_pauses_the_task_and_halves_its_rate_and_another_task_sees_it(aws) -> None:
    aws.s3.create_bucket(Bucket="raw")
    signal = S3SlowDownSignal(aws.s3, "raw", "job-1")
    limiter = RateLimiter(10.0, signal=signal)
    hits: list[str] = []
    with serve_in_thread(throttling_app(hits)) as base_url:
        page = fetch(base_url, PageRequest(f"{base_url}/items"), limiter=limiter)
    assert page.records == [] and len(hits) == 2
    assert limiter.rate is not None and limiter.rate < 10.0
    published = signal.read()
    assert published is not None and published == pytest.approx(limiter.paused_until)

    # Another fetch task of the job (its own limiter, same signal): its next request waits.
    now = [published - 0.5]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    other = RateLimiter(
        5.0, signal=S3SlowDownSignal(aws.s3, "raw", "job-1"), clock=lambda: now[0], sleep=sleep
    )
    asyncio.run(other.acquire())
    assert slept == [pytest.approx(0.5)]
    assert other.rate == pytest.approx(2.5)


def test_a_response_that_is_not_json_is_retried_then_given_up_with_a_clear_reason() -> None:
    async def broken(request: web.Request) -> web.Response:
        return web.Response(text="<html>maintenance</html>")

    app = web.Application()
    app.router.add_get("/items", broken)
    with serve_in_thread(app) as base_url, pytest.raises(RetriableError, match="not JSON"):
        fetch(base_url, PageRequest(f"{base_url}/items"))


def test_an_api_key_echoed_in_an_error_body_is_masked() -> None:
    async def echo(request: web.Request) -> web.Response:
        return web.Response(text=f"bad request: {request.query_string}", status=400)

    app = web.Application()
    app.router.add_get("/items", echo)
    with serve_in_thread(app) as base_url, pytest.raises(Exception) as raised:
        fetch(base_url, PageRequest(f"{base_url}/items"), kind="api_key_query")
    assert "HTTP 400" in str(raised.value) and SECRET not in str(raised.value)
