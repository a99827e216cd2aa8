"""Credentials scoped to one origin: a source's Airflow Connection and its ``auth`` kind.

A source's credentials belong to the origin (scheme, host, port) of its Connection, and to
nothing else. ``credentials_for(connection, auth)`` builds them once per job; then, for each
request, ``await credentials.parts_for(url)`` returns the headers and query parameters to add,
or raises ``CrossOriginRequest`` for a URL on any other origin (another host, port or scheme),
so a next link, a redirect or a trigger's conf can never carry them elsewhere. The ``none`` kind
refuses foreign URLs too: every request of a source stays on its Connection's origin.

Credentials are read from the Connection only (``login``, ``password``), never from a trigger's
conf. Their repr shows the kind and the origin, never a secret; ``redact(text)`` masks the
secrets in a text (a URL echoed by the API, an error body) before it is logged or stored.

OAuth2 client credentials fetch a token from ``token_url`` (POST, ``grant_type=client_credentials``,
the client authenticated with HTTP Basic or in the body), cache it until shortly before it
expires, and refresh it on expiry. After a 401, ``await credentials.unauthorized(parts)`` says
whether to retry: true once (the cached token is dropped and the next request fetches a new one);
false when the token that was refused had itself just been fetched after a 401.

The Connection is duck-typed (``host``, ``schema``, ``port``, ``login``, ``password``,
``extra_dejson``, ``conn_id``), so this module needs no Airflow. The base URL follows HttpHook:
``host`` may carry the scheme (``https://api.example``), else ``schema`` or ``http`` is used.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

import aiohttp

from api_poller.core.errors import AuthenticationError, CrossOriginRequest, FatalError, RetriableError
from api_poller.sources.spec import AuthSpec

DEFAULT_PORTS = {"http": 80, "https": 443}
# A token is refreshed this long before it expires (at most a tenth of its lifetime).
TOKEN_REFRESH_MARGIN_SECONDS = 60.0
TOKEN_TIMEOUT_SECONDS = 30.0
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


class HttpConnection(Protocol):
    """What is read from an Airflow Connection (``airflow.sdk.Connection`` has all of it)."""

    conn_id: str
    host: str | None
    schema: str | None
    port: int | None
    login: str | None
    password: str | None

    @property
    def extra_dejson(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Origin:
    """Scheme, host and port: where credentials may go (RFC 6454), default ports made explicit."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Origin:
        """The origin of an absolute http(s) URL; FatalError if it has none."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as error:
            raise FatalError(f"{url!r} is not a valid URL: {error}") from None
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS or not parts.hostname:
            raise FatalError(f"{url!r} is not an absolute http(s) URL")
        return cls(scheme=scheme, host=parts.hostname.lower(), port=port or DEFAULT_PORTS[scheme])

    def owns(self, url: str) -> bool:
        """True if ``url`` is on exactly this origin."""
        try:
            return Origin.of(url) == self
        except FatalError:
            return False

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if DEFAULT_PORTS.get(self.scheme) == self.port else f":{self.port}"
        return f"{self.scheme}://{host}{port}"


def connection_base_url(connection: HttpConnection) -> str:
    """The Connection's base URL, as HttpHook builds it: ``host`` with its scheme, or
    ``<schema or http>://host``; ``port`` when set (unless the host URL already has one)."""
    host = (connection.host or "").strip()
    conn_id = getattr(connection, "conn_id", "?")
    if not host:
        raise FatalError(f"Connection {conn_id!r} has no host")
    scheme = (connection.schema or "http").strip().lower()
    base = host if "://" in host else f"{scheme}://{host}"
    parts = urlsplit(base)
    if connection.port and parts.port is None:
        netloc = f"{parts.netloc}:{connection.port}"
        base = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    try:
        Origin.of(base)
    except FatalError as error:
        raise FatalError(f"Connection {conn_id!r}: {error}") from None
    return base.rstrip("/")


def connection_origin(connection: HttpConnection) -> Origin:
    return Origin.of(connection_base_url(connection))


def source_url(connection: HttpConnection, path: str) -> str:
    """A source's URL: the Connection's base URL joined with the source's path (HttpHook's way)."""
    return f"{connection_base_url(connection)}/{path.lstrip('/')}"


def _display(url: str) -> str:
    """A URL for messages: scheme, host, port and path only (a query or user info may hold a secret)."""
    parts = urlsplit(url)
    try:
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        port = ""
    return urlunsplit((parts.scheme, f"{parts.hostname or ''}{port}", parts.path, "", ""))


@dataclass(frozen=True, repr=False)
class AuthParts:
    """What to add to one request. Its repr names the headers and parameters, never their values.

    ``token`` identifies the OAuth2 token used, for ``unauthorized``.
    """

    headers: Mapping[str, str] = field(default_factory=dict)
    params: tuple[tuple[str, str], ...] = ()
    token: str | None = None

    def __repr__(self) -> str:
        return f"AuthParts(headers={sorted(self.headers)}, params={[name for name, _ in self.params]})"

    __str__ = __repr__


class Credentials(ABC):
    """Credentials of one source for one origin. Subclasses hold their secrets in private
    attributes and list them in ``_secrets`` (for ``redact``)."""

    kind: ClassVar[str]

    def __init__(self, origin: Origin) -> None:
        self.origin = origin

    def check_origin(self, url: str) -> None:
        """Refuse any URL outside the origin, naming its host (never the credentials)."""
        if not self.origin.owns(url):
            try:
                target = str(Origin.of(url))
            except FatalError:
                target = _display(url) or "a URL without a host"
            raise CrossOriginRequest(
                f"refused to send a request to {target}: this source's credentials and requests "
                f"belong to {self.origin} only"
            )

    async def parts_for(self, url: str, session: aiohttp.ClientSession | None = None) -> AuthParts:
        """Headers and query parameters for a request to ``url``; CrossOriginRequest elsewhere.

        ``session`` is used to fetch a token where one is needed (a short-lived one otherwise).
        """
        self.check_origin(url)
        return await self._parts(session)

    @abstractmethod
    async def _parts(self, session: aiohttp.ClientSession | None) -> AuthParts: ...

    async def unauthorized(self, parts: AuthParts) -> bool:
        """A request with ``parts`` got a 401: True if a retry with fresh credentials may help."""
        return False

    def _secrets(self) -> tuple[str, ...]:
        return ()

    def redact(self, text: str) -> str:
        """``text`` with every secret (as is, URL-encoded or in Basic form) replaced by ***."""
        for secret in self._secrets():
            if not secret:
                continue
            for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
                text = text.replace(form, "***")
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}(origin='{self.origin}')"

    __str__ = __repr__


class NoCredentials(Credentials):
    kind = "none"

    async def _parts(self, session: aiohttp.ClientSession | None) -> AuthParts:
        return AuthParts()


class _StaticCredentials(Credentials):
    """Credentials that are the same for every request."""

    def __init__(self, origin: Origin, parts: AuthParts, secrets: tuple[str, ...]) -> None:
        super().__init__(origin)
        self.__parts = parts
        self.__secrets = secrets

    async def _parts(self, session: aiohttp.ClientSession | None) -> AuthParts:
        return self.__parts

    def _secrets(self) -> tuple[str, ...]:
        return self.__secrets


class BasicCredentials(_StaticCredentials):
    kind = "basic"

    def __init__(self, origin: Origin, login: str, password: str) -> None:
        encoded = base64.b64encode(f"{login}:{password}".encode()).decode()
        parts = AuthParts(headers={"Authorization": f"Basic {encoded}"})
        super().__init__(origin, parts, (password, encoded))


class BearerToken(_StaticCredentials):
    kind = "bearer"

    def __init__(self, origin: Origin, token: str) -> None:
        super().__init__(origin, AuthParts(headers={"Authorization": f"Bearer {token}"}), (token,))


class ApiKeyHeader(_StaticCredentials):
    kind = "api_key_header"

    def __init__(self, origin: Origin, header: str, key: str) -> None:
        super().__init__(origin, AuthParts(headers={header: key}), (key,))
        self.header = header

    def __repr__(self) -> str:
        return f"ApiKeyHeader(origin='{self.origin}', header={self.header!r})"


class ApiKeyQuery(_StaticCredentials):
    kind = "api_key_query"

    def __init__(self, origin: Origin, param: str, key: str) -> None:
        super().__init__(origin, AuthParts(params=((param, key),)), (key,))
        self.param = param

    def __repr__(self) -> str:
        return f"ApiKeyQuery(origin='{self.origin}', param={self.param!r})"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_token_url(token_url: str, connection_origin: Origin) -> None:
    """A client secret travels in clear text over http: allow http only to a loopback address or
    the Connection's own host; anywhere else the token URL must be https."""
    token_origin = Origin.of(token_url)
    if token_origin.scheme == "https":
        return
    if _is_loopback(token_origin.host) or token_origin.host == connection_origin.host:
        return
    raise AuthenticationError(
        f"token_url {_display(token_url)} uses http: the client secret would travel in clear text; "
        f"use https (http is allowed only on loopback or on the Connection's host {connection_origin.host})"
    )


class OAuth2ClientCredentials(Credentials):
    """An OAuth2 access token (RFC 6749 4.4), fetched from ``token_url`` and cached."""

    kind = "oauth2_client_credentials"

    def __init__(
        self,
        origin: Origin,
        *,
        token_url: str,
        client_id: str,
        client_secret: str,
        scope: str = "",
        client_auth: str = "basic",
        clock: Callable[[], float] = time.monotonic,
        timeout_seconds: float = TOKEN_TIMEOUT_SECONDS,
    ) -> None:
        super().__init__(origin)
        check_token_url(token_url, origin)
        self.token_url = token_url
        self.scope = scope
        self.client_auth = client_auth
        self._client_id = client_id
        self.__client_secret = client_secret
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self.__token: str | None = None
        self._expires_at: float | None = None
        # The cached token was fetched because the previous one got a 401: a 401 on it is final.
        self._forced = False
        self._refresh_forced_next = False
        self.token_requests = 0
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"OAuth2ClientCredentials(origin='{self.origin}', token_url='{_display(self.token_url)}')"

    __str__ = __repr__

    def _secrets(self) -> tuple[str, ...]:
        return tuple(secret for secret in (self.__client_secret, self.__token) if secret)

    def _guard(self) -> asyncio.Lock:
        # One token fetch at a time; a lock belongs to one event loop, and tasks may run several.
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    def _valid(self) -> bool:
        return self.__token is not None and (self._expires_at is None or self._clock() < self._expires_at)

    async def _parts(self, session: aiohttp.ClientSession | None) -> AuthParts:
        async with self._guard():
            if not self._valid():
                await self._refresh(session)
            token = self.__token
        assert token is not None
        return AuthParts(headers={"Authorization": f"Bearer {token}"}, token=token)

    async def unauthorized(self, parts: AuthParts) -> bool:
        async with self._guard():
            if parts.token != self.__token:
                return True  # another request already replaced the refused token
            if self._forced:
                return False  # the token fetched after a 401 was refused too: retrying cannot help
            self.__token, self._expires_at = None, None
            self._refresh_forced_next = True
            return True

    async def _refresh(self, session: aiohttp.ClientSession | None) -> None:
        if session is None:
            async with aiohttp.ClientSession() as own_session:
                token, lifetime = await self._request_token(own_session)
        else:
            token, lifetime = await self._request_token(session)
        self.__token = token
        self._forced, self._refresh_forced_next = self._refresh_forced_next, False
        if lifetime is None:
            self._expires_at = None  # kept until the API refuses it
        else:
            margin = min(TOKEN_REFRESH_MARGIN_SECONDS, lifetime / 10)
            self._expires_at = self._clock() + lifetime - margin

    async def _request_token(self, session: aiohttp.ClientSession) -> tuple[str, float | None]:
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        headers = {"Accept": "application/json"}
        if self.client_auth == "basic":
            pair = f"{self._client_id}:{self.__client_secret}".encode()
            headers["Authorization"] = f"Basic {base64.b64encode(pair).decode()}"
        else:
            form.update(client_id=self._client_id, client_secret=self.__client_secret)
        where = _display(self.token_url)
        self.token_requests += 1
        try:
            async with session.post(
                self.token_url,
                data=form,
                headers=headers,
                allow_redirects=False,  # a redirect must not carry the client secret anywhere
                timeout=self._timeout,
            ) as response:
                status = response.status
                text = await response.text()
        except (TimeoutError, aiohttp.ClientError) as error:
            reason = "timed out" if isinstance(error, TimeoutError) else type(error).__name__
            raise RetriableError(f"token request to {where} failed: {reason}") from None
        try:
            body = json.loads(text)
        except ValueError:
            body = None  # judged by its status; a 200 without JSON has no access_token
        return _token_from(status, body, where)


def _token_from(status: int, body: Any, where: str) -> tuple[str, float | None]:
    """The access token and its lifetime from a token response; errors never echo the body."""
    if status == 429 or status >= 500:
        raise RetriableError(f"token request to {where} failed: HTTP {status}")
    if 300 <= status < 400:
        raise AuthenticationError(
            f"token request to {where} was redirected (HTTP {status}): give the final URL"
        )
    if status != 200:
        code = body.get("error") if isinstance(body, Mapping) else None
        detail = f" ({code})" if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else ""
        raise AuthenticationError(f"token request to {where} was refused: HTTP {status}{detail}")
    token = body.get("access_token") if isinstance(body, Mapping) else None
    if not isinstance(token, str) or not token:
        raise AuthenticationError(f"token response from {where} has no access_token")
    token_type = body.get("token_type", "bearer")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise AuthenticationError(f"token response from {where} has token_type {token_type!r}, not bearer")
    lifetime = body.get("expires_in")
    if isinstance(lifetime, str) and lifetime.isdigit():
        lifetime = int(lifetime)
    if lifetime is not None and (isinstance(lifetime, bool) or not isinstance(lifetime, int | float)):
        raise AuthenticationError(f"token response from {where} has expires_in {lifetime!r}, not a number")
    return token, None if lifetime is None else float(lifetime)


def credentials_for(connection: HttpConnection, auth: AuthSpec, **oauth_options: Any) -> Credentials:
    """A source's credentials: its ``auth`` kind applied to its Connection's login/password, for
    the Connection's origin only. AuthenticationError names what the Connection lacks.

    ``oauth_options`` (``clock``, ``timeout_seconds``) go to OAuth2ClientCredentials.
    """
    origin = connection_origin(connection)
    conn_id = getattr(connection, "conn_id", "?")
    login, password = connection.login or "", connection.password or ""

    def need(*what: str) -> None:
        missing = [name for name in what if not {"login": login, "password": password}[name]]
        if missing:
            raise AuthenticationError(
                f"Connection {conn_id!r}: auth type {auth.type} needs a {' and a '.join(missing)} "
                "in the Connection"
            )

    if auth.type == "none":
        return NoCredentials(origin)
    if auth.type == "basic":
        need("login", "password")
        return BasicCredentials(origin, login, password)
    if auth.type == "bearer":
        need("password")
        return BearerToken(origin, password)
    if auth.type == "api_key_header":
        need("password")
        return ApiKeyHeader(origin, auth.header, password)
    if auth.type == "api_key_query":
        need("password")
        return ApiKeyQuery(origin, auth.param, password)
    if auth.type == "oauth2_client_credentials":
        need("login", "password")
        return OAuth2ClientCredentials(
            origin,
            token_url=auth.token_url,
            client_id=login,
            client_secret=password,
            scope=auth.scope,
            client_auth=auth.client_auth,
            **oauth_options,
        )
    raise AuthenticationError(f"unknown auth type {auth.type!r}")
