"""How the partner API is reached: retry policy, request options and credentials, the SSRF check."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from api_poller.partner.client import ClientOptions, RetryPolicy
from api_poller.partner.url_policy import check_url_allowed, parse_allowlist
from api_poller.settings import PollerSettings

if TYPE_CHECKING:
    from airflow.sdk import Connection


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


def client_options(settings: PollerSettings) -> ClientOptions:
    """Request options, with the credentials of ``API_POLLER_PARTNER_API_CONN_ID`` if set."""
    headers: dict[str, str] = {}
    if settings.partner_api_conn_id:
        from airflow.sdk import BaseHook

        headers = connection_headers(BaseHook.get_connection(settings.partner_api_conn_id))
    return ClientOptions(
        timeout=settings.http_timeout_seconds,
        max_response_bytes=settings.max_response_bytes,
        headers=headers,
    )


def check_job_url(url: str, settings: PollerSettings) -> None:
    """The SSRF guard, run before any request to the partner API."""
    check_url_allowed(url, parse_allowlist(settings.url_allowlist))
