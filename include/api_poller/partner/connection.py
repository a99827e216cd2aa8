"""How the partner API is reached: retry policy, request options and credentials, the SSRF check.

The free-URL ``api_poller`` DAG fetches whatever URL a run is given, so the credentials of the
``API_POLLER_PARTNER_API_CONN_ID`` Connection belong to that Connection's origin (scheme, host,
port) only: a job URL on any other origin is fetched without them (and the log says they were
withheld, never what they are), and a request carrying them never follows a redirect.
"""

from __future__ import annotations

import base64
import logging
from typing import TYPE_CHECKING

from api_poller.core.errors import FatalError
from api_poller.partner.auth import Origin, connection_origin
from api_poller.partner.client import ClientOptions, RetryPolicy
from api_poller.partner.url_policy import check_url_allowed, parse_allowlist
from api_poller.settings import PollerSettings

if TYPE_CHECKING:
    from airflow.sdk import Connection

log = logging.getLogger(__name__)


def retry_policy(settings: PollerSettings) -> RetryPolicy:
    return RetryPolicy(
        attempts=settings.http_attempts,
        initial_seconds=settings.retry_initial_seconds,
        backoff_rate=settings.retry_backoff_rate,
        max_seconds=settings.retry_max_seconds,
        retry_after_max_seconds=settings.retry_after_max_seconds,
    )


def connection_headers(connection: Connection) -> dict[str, str]:
    """Request headers from the partner API's Airflow connection (never logged or stored)."""
    headers = {str(k): str(v) for k, v in (connection.extra_dejson.get("headers") or {}).items()}
    if connection.login and connection.password:
        token = base64.b64encode(f"{connection.login}:{connection.password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    elif connection.password:
        headers["Authorization"] = f"Bearer {connection.password}"
    return headers


def _origin_or_none(url: str) -> Origin | None:
    try:
        return Origin.of(url)
    except FatalError:
        return None


def scoped_connection_headers(connection: Connection, url: str) -> dict[str, str]:
    """The Connection's headers if ``url`` is on the Connection's origin, else none (logged).

    A Connection without a host has no origin, so its credentials go nowhere: set its host (and
    port, scheme) to the partner API's base URL.
    """
    headers = connection_headers(connection)
    if not headers:
        return {}
    conn_id = getattr(connection, "conn_id", "?")
    try:
        allowed = connection_origin(connection)
    except FatalError as error:
        log.warning(
            "Credentials of Connection %r withheld from %s: %s (credentials go only to the "
            "Connection's scheme, host and port; set its host to the partner API's base URL)",
            conn_id,
            _origin_or_none(url) or "the job URL",
            error,
        )
        return {}
    target = _origin_or_none(url)
    if target != allowed:
        log.warning(
            "Credentials of Connection %r withheld: the job URL is on %s, and they go only to %s",
            conn_id,
            target or "no valid origin",
            allowed,
        )
        return {}
    return headers


def client_options(settings: PollerSettings, url: str) -> ClientOptions:
    """Request options for the job URL ``url``: the credentials of ``API_POLLER_PARTNER_API_CONN_ID``
    are added only when ``url`` is on that Connection's origin, and then no redirect is followed
    (a redirect elsewhere would carry them; aiohttp drops only ``Authorization``)."""
    headers: dict[str, str] = {}
    if settings.partner_api_conn_id:
        from airflow.sdk import BaseHook

        headers = scoped_connection_headers(BaseHook.get_connection(settings.partner_api_conn_id), url)
    return ClientOptions(
        timeout=settings.http_timeout_seconds,
        max_response_bytes=settings.max_response_bytes,
        headers=headers,
        follow_redirects=not headers,
    )


def check_job_url(url: str, settings: PollerSettings) -> None:
    """The SSRF guard, run before any request to the partner API."""
    check_url_allowed(url, parse_allowlist(settings.url_allowlist))
