"""Credential checks of the data endpoints, and the OAuth2 client-credentials token endpoint.

One auth kind per instance (``AuthConfig``). A data request with missing or wrong credentials
gets 401 with ``WWW-Authenticate`` and a JSON reason that never echoes a credential.
``POST /oauth/token`` (only with ``oauth2_client_credentials``) takes
``grant_type=client_credentials`` as a form, the client authenticated by HTTP basic *or* by
``client_id``/``client_secret`` form fields (not both, RFC 6749 2.3), and answers
``{"access_token", "token_type": "bearer", "expires_in"}``; errors follow RFC 6749 5.2.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from aiohttp import web

from .config import AuthConfig
from .state import CONFIG_KEY, STATS_KEY, TOKENS_KEY

REALM = "partner-api"


def _same(given: str, expected: str) -> bool:
    # surrogateescape: aiohttp decodes non-UTF-8 header bytes that way; they must not raise here.
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode())


def _scheme_value(request: web.Request, scheme: str) -> str | None:
    """The credentials after ``Authorization: <scheme> `` (scheme case-insensitive), or None."""
    header = request.headers.get("Authorization", "")
    given_scheme, _, value = header.partition(" ")
    return value.strip() if given_scheme.lower() == scheme.lower() else None


def basic_credentials(request: web.Request) -> tuple[str, str] | None:
    """(user, password) of an ``Authorization: Basic`` header, or None if absent or malformed."""
    encoded = _scheme_value(request, "Basic")
    if not encoded:
        return None
    try:
        user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def credential_problem(request: web.Request) -> str | None:
    """Why the request's credentials are refused, or None when they are accepted."""
    auth = request.app[CONFIG_KEY].auth
    if auth.kind == "none":
        return None
    if auth.kind == "basic":
        given = basic_credentials(request)
        if given is None:
            return "missing HTTP basic credentials"
        return None if _same(given[0], auth.login) & _same(given[1], auth.secret) else "wrong credentials"
    if auth.kind in {"api_key_header", "api_key_query"}:
        where = auth.header if auth.kind == "api_key_header" else auth.param
        key = request.headers.get(where) if auth.kind == "api_key_header" else request.query.get(where)
        if key is None:
            return f"missing API key ({where})"
        return None if _same(key, auth.secret) else "wrong API key"
    token = _scheme_value(request, "Bearer")
    if not token:
        return "missing bearer token"
    if auth.kind == "bearer":
        return None if _same(token, auth.secret) else "wrong bearer token"
    return None if request.app[TOKENS_KEY].is_valid(token) else "expired or unknown access token"


def _challenge(auth: AuthConfig, token_was_given: bool) -> str:
    if auth.kind == "basic":
        return f'Basic realm="{REALM}", charset="UTF-8"'
    if auth.kind == "api_key_header":
        return f'ApiKey realm="{REALM}", header="{auth.header}"'
    if auth.kind == "api_key_query":
        return f'ApiKey realm="{REALM}", param="{auth.param}"'
    # RFC 6750 3.1: a request without a token gets no error code.
    return f'Bearer realm="{REALM}"' + (', error="invalid_token"' if token_was_given else "")


def unauthorized(request: web.Request, problem: str) -> web.Response:
    auth = request.app[CONFIG_KEY].auth
    challenge = _challenge(auth, token_was_given=bool(_scheme_value(request, "Bearer")))
    return web.json_response(
        {"error": f"unauthorized: {problem}"}, status=401, headers={"WWW-Authenticate": challenge}
    )


def _token_error(error: str, description: str, status: int = 400) -> web.Response:
    headers = {"Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = f'Basic realm="{REALM}"'
    return web.json_response(
        {"error": error, "error_description": description}, status=status, headers=headers
    )


async def handle_token(request: web.Request) -> web.Response:
    """``POST /oauth/token``: an access token for valid client credentials."""
    auth = request.app[CONFIG_KEY].auth
    stats = request.app[STATS_KEY]
    stats.token_requests += 1
    if request.content_type != "application/x-www-form-urlencoded":
        return _token_error("invalid_request", "expected an application/x-www-form-urlencoded body")
    try:
        form = await request.post()
    except ValueError:  # e.g. a body that is not UTF-8
        return _token_error("invalid_request", "the form body could not be decoded")
    grant_type = form.get("grant_type")
    if grant_type is None:
        return _token_error("invalid_request", "missing grant_type")
    if grant_type != "client_credentials":
        return _token_error("unsupported_grant_type", "only grant_type=client_credentials is supported")

    from_header = basic_credentials(request)
    from_form = form.get("client_id"), form.get("client_secret")
    if from_header is not None and any(value is not None for value in from_form):
        return _token_error("invalid_request", "client authenticated twice (HTTP basic and form fields)")
    client = from_header or from_form
    client_id, client_secret = (str(value) if value is not None else None for value in client)
    if client_id is None or client_secret is None:
        return _token_error("invalid_client", "missing client credentials", status=401)
    if not (_same(client_id, auth.login) & _same(client_secret, auth.secret)):
        return _token_error("invalid_client", "wrong client credentials", status=401)

    token = request.app[TOKENS_KEY].issue(auth.token_ttl_seconds)
    stats.tokens_issued += 1
    body: dict[str, object] = {
        "access_token": token,
        "token_type": "bearer",
        "expires_in": auth.token_ttl_seconds,
    }
    if "scope" in form:
        body["scope"] = str(form["scope"])
    return web.json_response(body, headers={"Cache-Control": "no-store"})
