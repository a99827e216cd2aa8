"""Unit tests of api_poller.partner.auth: credentials go to their Connection's origin only.

OAuth2 runs against a small token server on 127.0.0.1 (tests.helpers.serve_in_thread); time is a
fake clock, so expiry is tested without waiting.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from api_poller.core.errors import AuthenticationError, CrossOriginRequest, FatalError, RetriableError
from api_poller.partner.auth import (
    AuthParts,
    Credentials,
    OAuth2ClientCredentials,
    Origin,
    connection_base_url,
    credentials_for,
    source_url,
)
from api_poller.sources.spec import AuthSpec
from tests.helpers import serve_in_thread

SECRET = "s3cr3t-Pa55/word"
API = "https://api.test"


@dataclass
class FakeConnection:
    """Duck-types an Airflow Connection."""

    conn_id: str = "acme_api"
    host: str | None = "api.test"
    schema: str | None = "https"
    port: int | None = None
    login: str | None = "client-7"
    password: str | None = SECRET
    extra_dejson: dict[str, Any] = field(default_factory=dict)


def parts(credentials: Credentials, url: str) -> AuthParts:
    return asyncio.run(credentials.parts_for(url))


# --- The Connection's base URL and origin ------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "schema", "port", "expected"),
    [
        ("api.test", "https", None, "https://api.test"),
        ("api.test", None, None, "http://api.test"),
        ("api.test", "", 8080, "http://api.test:8080"),
        ("https://api.test/v2/", None, None, "https://api.test/v2"),
        ("https://api.test", "http", 8443, "https://api.test:8443"),
        ("https://api.test:9443", None, 8443, "https://api.test:9443"),
    ],
)
def test_base_url_follows_http_hook_conventions(
    host: str, schema: str | None, port: int | None, expected: str
) -> None:
    assert connection_base_url(FakeConnection(host=host, schema=schema, port=port)) == expected


def test_source_url_joins_the_base_url_and_the_path() -> None:
    assert source_url(FakeConnection(host="https://api.test/v2"), "/orders") == "https://api.test/v2/orders"


@pytest.mark.parametrize("host", [None, "", "ftp://api.test"])
def test_connection_without_a_usable_host_is_a_clear_error(host: str | None) -> None:
    with pytest.raises(FatalError, match="Connection 'acme_api'"):
        connection_base_url(FakeConnection(host=host))


def test_origin_makes_default_ports_explicit() -> None:
    assert (
        Origin.of("https://API.test/x")
        == Origin.of("https://api.test:443/y")
        == Origin("https", "api.test", 443)
    )
    assert str(Origin.of("http://api.test:8080/x")) == "http://api.test:8080"
    assert str(Origin.of("https://[::1]:8443/x")) == "https://[::1]:8443"


# --- Each kind: the right header or parameter, for the right origin only ------------------------

BASIC = "Basic " + base64.b64encode(f"client-7:{SECRET}".encode()).decode()
STATIC_KINDS = [
    (AuthSpec(type="none"), {}, ()),
    (AuthSpec(type="basic"), {"Authorization": BASIC}, ()),
    (AuthSpec(type="bearer"), {"Authorization": f"Bearer {SECRET}"}, ()),
    (AuthSpec(type="api_key_header"), {"X-API-Key": SECRET}, ()),
    (AuthSpec(type="api_key_header", header="X-Acme-Key"), {"X-Acme-Key": SECRET}, ()),
    (AuthSpec(type="api_key_query"), {}, (("api_key", SECRET),)),
    (AuthSpec(type="api_key_query", param="key"), {}, (("key", SECRET),)),
]


@pytest.mark.parametrize(("auth", "headers", "params"), STATIC_KINDS, ids=lambda v: getattr(v, "type", ""))
def test_each_kind_adds_its_credentials_for_the_connections_origin(
    auth: AuthSpec, headers: dict[str, str], params: tuple[tuple[str, str], ...]
) -> None:
    credentials = credentials_for(FakeConnection(), auth)

    for url in (f"{API}/v1/orders?page=2", "https://api.test:443/other", "https://API.TEST/x"):
        added = parts(credentials, url)
        assert (dict(added.headers), added.params) == (headers, params)


FOREIGN_URLS = [
    ("other host", "https://evil.example/v1/orders", "https://evil.example"),
    ("subdomain", "https://x.api.test/v1/orders", "https://x.api.test"),
    ("other port", "https://api.test:8443/v1/orders", "https://api.test:8443"),
    ("other scheme", "http://api.test/v1/orders", "http://api.test"),
    ("userinfo trick", "https://api.test@evil.example/v1", "https://evil.example"),
]


@pytest.mark.parametrize("auth", [case[0] for case in STATIC_KINDS], ids=lambda v: v.type)
@pytest.mark.parametrize(
    ("url", "named"), [case[1:] for case in FOREIGN_URLS], ids=[c[0] for c in FOREIGN_URLS]
)
def test_each_kind_refuses_another_origin_without_leaking_the_secret(
    auth: AuthSpec, url: str, named: str
) -> None:
    credentials = credentials_for(FakeConnection(), auth)

    with pytest.raises(CrossOriginRequest) as caught:
        parts(credentials, url)

    message = str(caught.value)
    assert f"refused to send a request to {named}" in message
    assert "belong to https://api.test only" in message
    assert SECRET not in message and "Pa55" not in message


@pytest.mark.parametrize(
    ("auth", "connection", "missing"),
    [
        (AuthSpec(type="basic"), FakeConnection(login=None), "a login"),
        (AuthSpec(type="basic"), FakeConnection(password=""), "a password"),
        (AuthSpec(type="bearer"), FakeConnection(password=None), "a password"),
        (AuthSpec(type="api_key_header"), FakeConnection(password=None), "a password"),
        (AuthSpec(type="api_key_query"), FakeConnection(password=None), "a password"),
        (
            AuthSpec(type="oauth2_client_credentials", token_url="https://auth.test/token"),
            FakeConnection(login=None, password=None),
            "a login and a password",
        ),
    ],
)
def test_missing_credentials_name_the_connection(
    auth: AuthSpec, connection: FakeConnection, missing: str
) -> None:
    with pytest.raises(
        AuthenticationError, match=f"Connection 'acme_api': auth type {auth.type} needs {missing}"
    ):
        credentials_for(connection, auth)


@pytest.mark.parametrize(
    "auth",
    [case[0] for case in STATIC_KINDS]
    + [AuthSpec(type="oauth2_client_credentials", token_url="https://auth.test/token?secret=x")],
    ids=lambda v: v.type,
)
def test_secrets_are_absent_from_repr_and_str(auth: AuthSpec) -> None:
    credentials = credentials_for(FakeConnection(), auth)
    shown = repr(credentials) + str(credentials)

    assert "https://api.test" in shown
    assert SECRET not in shown and "Pa55" not in shown and "secret=x" not in shown
    if auth.type != "oauth2_client_credentials":
        added = parts(credentials, API)
        assert SECRET not in repr(added) + str(added) and "Basic" not in repr(added)


def test_redact_masks_the_secret_as_sent_or_url_encoded() -> None:
    credentials = credentials_for(FakeConnection(), AuthSpec(type="api_key_query"))

    echoed = f"{API}/next?api_key=s3cr3t-Pa55%2Fword and {SECRET}"

    assert credentials.redact(echoed) == f"{API}/next?api_key=*** and ***"


# --- OAuth2 client credentials against a token server ------------------------------------------


class TokenServer:
    """Issues token-1, token-2, ... and records what each token request carried."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.expires_in: int | None = 100
        self.refuse_with: tuple[int, dict[str, Any] | None] | None = None
        self.url = ""

    async def token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.requests.append({"form": form, "authorization": request.headers.get("Authorization")})
        if self.refuse_with:
            status, body = self.refuse_with
            if body is None:
                return web.Response(status=status, text="<html>Forbidden</html>", content_type="text/html")
            return web.json_response(body, status=status)
        body: dict[str, Any] = {"access_token": f"token-{len(self.requests)}", "token_type": "Bearer"}
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        return web.json_response(body)


@pytest.fixture(scope="module")
def token_server() -> Iterator[TokenServer]:
    server = TokenServer()
    app = web.Application()
    app.router.add_post("/token", server.token)
    with serve_in_thread(app) as base_url:
        server.url = f"{base_url}/token"
        yield server


@pytest.fixture
def tokens(token_server: TokenServer) -> TokenServer:
    token_server.requests.clear()
    token_server.expires_in = 100
    token_server.refuse_with = None
    return token_server


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def oauth(tokens: TokenServer, clock: Clock | None = None, **spec: Any) -> OAuth2ClientCredentials:
    auth = AuthSpec(type="oauth2_client_credentials", token_url=tokens.url, **spec)
    credentials = credentials_for(FakeConnection(), auth, clock=clock or Clock())
    assert isinstance(credentials, OAuth2ClientCredentials)
    return credentials


def test_oauth2_fetches_a_token_once_and_sends_it_as_bearer(tokens: TokenServer) -> None:
    credentials = oauth(tokens, scope="orders:read")

    async def two_requests() -> list[AuthParts]:
        return list(await asyncio.gather(*(credentials.parts_for(f"{API}/v1/orders") for _ in range(5))))

    added = asyncio.run(two_requests())

    assert {part.headers["Authorization"] for part in added} == {"Bearer token-1"}
    assert len(tokens.requests) == 1
    sent = tokens.requests[0]
    assert sent["form"] == {"grant_type": "client_credentials", "scope": "orders:read"}
    assert sent["authorization"] == "Basic " + base64.b64encode(f"client-7:{SECRET}".encode()).decode()


def test_oauth2_client_may_authenticate_in_the_body(tokens: TokenServer) -> None:
    parts(oauth(tokens, client_auth="body"), API)

    assert tokens.requests[0]["authorization"] is None
    assert tokens.requests[0]["form"] == {
        "grant_type": "client_credentials",
        "client_id": "client-7",
        "client_secret": SECRET,
    }


def test_oauth2_token_is_refreshed_shortly_before_it_expires(tokens: TokenServer) -> None:
    clock = Clock()
    credentials = oauth(tokens, clock)

    async def scenario() -> list[str]:
        seen = [(await credentials.parts_for(API)).headers["Authorization"]]
        clock.now += 89  # expires_in 100, refreshed 10 s (a tenth) before
        seen.append((await credentials.parts_for(API)).headers["Authorization"])
        clock.now += 2
        seen.append((await credentials.parts_for(API)).headers["Authorization"])
        return seen

    assert asyncio.run(scenario()) == ["Bearer token-1", "Bearer token-1", "Bearer token-2"]
    assert len(tokens.requests) == 2


def test_oauth2_token_without_expiry_is_kept_until_refused(tokens: TokenServer) -> None:
    tokens.expires_in = None
    clock = Clock()
    credentials = oauth(tokens, clock)

    async def scenario() -> tuple[str, str, bool, str]:
        first = await credentials.parts_for(API)
        clock.now += 10**6
        later = await credentials.parts_for(API)
        retry = await credentials.unauthorized(later)
        return (
            first.headers["Authorization"],
            later.headers["Authorization"],
            retry,
            (await credentials.parts_for(API)).headers["Authorization"],
        )

    assert asyncio.run(scenario()) == ("Bearer token-1", "Bearer token-1", True, "Bearer token-2")


def test_oauth2_refreshes_once_after_a_401_then_gives_up(tokens: TokenServer) -> None:
    credentials = oauth(tokens)

    async def scenario() -> tuple[bool, bool, bool, str, bool]:
        first = await credentials.parts_for(API)
        # Two requests in flight got a 401 with the same token: one refresh, both retry.
        retry_a, retry_b = await asyncio.gather(
            credentials.unauthorized(first), credentials.unauthorized(first)
        )
        fresh = await credentials.parts_for(API)
        late_retry = await credentials.unauthorized(first)  # a third, late 401 with the old token
        refused_again = await credentials.unauthorized(fresh)
        return retry_a, retry_b, late_retry, fresh.headers["Authorization"], refused_again

    assert asyncio.run(scenario()) == (True, True, True, "Bearer token-2", False)
    assert len(tokens.requests) == 2


def test_oauth2_after_a_forced_refresh_a_normal_expiry_allows_a_refresh_again(tokens: TokenServer) -> None:
    clock = Clock()
    credentials = oauth(tokens, clock)

    async def scenario() -> bool:
        await credentials.unauthorized(await credentials.parts_for(API))
        await credentials.parts_for(API)  # token-2, fetched after the 401
        clock.now += 100
        third = await credentials.parts_for(API)  # token-3, fetched on expiry
        return await credentials.unauthorized(third)

    assert asyncio.run(scenario()) is True
    assert len(tokens.requests) == 3


def test_oauth2_refused_client_is_a_fatal_error_without_the_secret(tokens: TokenServer) -> None:
    tokens.refuse_with = (401, {"error": "invalid_client", "error_description": f"bad secret {SECRET}"})

    with pytest.raises(AuthenticationError) as caught:
        parts(oauth(tokens), API)

    assert f"token request to {tokens.url} was refused: HTTP 401 (invalid_client)" == str(caught.value)
    assert SECRET not in str(caught.value)


def test_oauth2_token_server_outage_is_retriable(tokens: TokenServer) -> None:
    tokens.refuse_with = (503, {})

    with pytest.raises(RetriableError, match="HTTP 503"):
        parts(oauth(tokens), API)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"token_type": "bearer"}, "has no access_token"),
        ({"access_token": "t", "token_type": "mac"}, "not bearer"),
        ({"access_token": "t", "expires_in": "soon"}, "not a number"),
    ],
)
def test_oauth2_unusable_token_response_is_a_clear_error(
    tokens: TokenServer, body: dict[str, Any], words: str
) -> None:
    tokens.refuse_with = (200, body)

    with pytest.raises(AuthenticationError, match=words):
        parts(oauth(tokens), API)


def test_oauth2_token_is_only_sent_to_the_connections_origin(tokens: TokenServer) -> None:
    credentials = oauth(tokens)

    with pytest.raises(CrossOriginRequest, match="evil"):
        parts(credentials, "https://evil.example/steal")
    assert tokens.requests == []  # refused before even fetching a token


@pytest.mark.parametrize(
    ("token_url", "allowed"),
    [
        ("https://auth.elsewhere.example/token", True),
        ("http://127.0.0.1:9000/token", True),
        ("http://localhost/token", True),
        ("http://[::1]:9000/token", True),
        ("http://api.test:8080/oauth/token", True),  # the Connection's own host
        ("http://auth.elsewhere.example/token", False),
        ("http://10.0.0.5/token", False),
    ],
)
def test_token_url_must_be_https_except_on_loopback_or_the_connections_host(
    token_url: str, allowed: bool
) -> None:
    auth = AuthSpec(type="oauth2_client_credentials", token_url=token_url)

    if allowed:
        credentials_for(FakeConnection(), auth)
        return
    with pytest.raises(AuthenticationError, match="clear text") as caught:
        credentials_for(FakeConnection(), auth)
    assert SECRET not in str(caught.value)


def test_oauth2_refusal_without_a_json_body_is_still_fatal(tokens: TokenServer) -> None:
    tokens.refuse_with = (403, None)

    with pytest.raises(AuthenticationError, match=r"was refused: HTTP 403$"):
        parts(oauth(tokens), API)
