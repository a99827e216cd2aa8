"""Partner API credentials come from an Airflow Connection, go only to that Connection's origin
(scheme, host, port), and never leak into logs, XCom or S3.

The credential-scope tests point the job URL at a recording server on a second port: nothing
secret may ever reach it, whatever the job's URL says, while the Connection's host still gets
the credentials.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from types import SimpleNamespace
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web
from api_poller_dev.simulator import RecordingServer, recording_server

from api_poller.core.errors import FatalError
from api_poller.partner.client import fetch_metadata
from api_poller.partner.connection import (
    client_options,
    connection_headers,
    retry_policy,
    scoped_connection_headers,
)
from api_poller.settings import PollerSettings
from tests.helpers import PROCESSED_BUCKET, RAW_BUCKET, run_job, serve_in_thread

SECRET = "s3cr3t-token-7f2a"
API_KEY = "k3y-9c41-header"
TOTAL, PAGE = 300, 100
# A one-record API in the seed's protocol: the recording server serves it to every request.
ONE_RECORD_API = {"maxRecordsPerPage": PAGE, "totalRecords": 1, "payload": [{"id": 0, "payload": "r"}]}
SETTINGS = PollerSettings(partner_api_conn_id="partner_api", http_attempts=1)


def connection(login=None, password=None, extra=None, host=None, port=None, schema=None):
    return SimpleNamespace(
        conn_id="partner_api",
        login=login,
        password=password,
        extra_dejson=extra or {},
        host=host,
        port=port,
        schema=schema,
    )


def connection_env(base_url: str, **fields: object) -> str:
    """``AIRFLOW_CONN_<ID>`` JSON for an HTTP Connection on ``base_url``'s host and port."""
    parts = urlsplit(base_url)
    document = {"conn_type": "http", "host": parts.hostname, "port": parts.port, "schema": parts.scheme}
    return json.dumps({**document, **fields})


def no_credentials_reached(recorder: RecordingServer) -> bool:
    return all(
        "Authorization" not in request.headers
        and "X-API-Key" not in request.headers
        and not request.carries(SECRET)
        and not request.carries(API_KEY)
        for request in recorder.requests
    )


def read_metadata(url: str, settings: PollerSettings = SETTINGS):
    async def call():
        async with aiohttp.ClientSession() as session:
            return await fetch_metadata(session, url, retry_policy(settings), client_options(settings, url))

    return asyncio.run(call())


def test_a_password_alone_is_a_bearer_token():
    assert connection_headers(connection(password="tok")) == {"Authorization": "Bearer tok"}


def test_login_and_password_are_basic_auth():
    assert connection_headers(connection("me", "pw")) == {"Authorization": "Basic bWU6cHc="}


def test_extra_headers_are_sent_as_given():
    headers = connection_headers(connection(extra={"headers": {"X-Api-Key": "k"}}))
    assert headers == {"X-Api-Key": "k"}


# -- scoping: which URL gets the Connection's headers ------------------------------------------------


def test_the_connections_own_origin_gets_its_headers():
    conn = connection(password="tok", host="partner.example", schema="https")
    assert scoped_connection_headers(conn, "https://partner.example/payload?x=1") == {
        "Authorization": "Bearer tok"
    }
    assert scoped_connection_headers(conn, "https://PARTNER.example:443/other") == {
        "Authorization": "Bearer tok"
    }


@pytest.mark.parametrize(
    "url",
    [
        "https://attacker.example/payload",  # another host
        "http://partner.example/payload",  # another scheme
        "https://partner.example:8443/payload",  # another port
        "https://partner.example.attacker.example/payload",  # a host that only starts the same
        "https://partner.example@attacker.example/payload",  # user info that looks like the host
        "not a url",
    ],
)
def test_any_other_origin_gets_no_headers_and_the_log_says_so_without_the_secret(url, caplog):
    headers = {"headers": {"X-API-Key": API_KEY}}
    conn = connection(password=SECRET, host="https://partner.example", extra=headers)
    with caplog.at_level(logging.WARNING, logger="api_poller.partner.connection"):
        assert scoped_connection_headers(conn, url) == {}
    assert "Credentials of Connection 'partner_api' withheld" in caplog.text
    assert "they go only to https://partner.example" in caplog.text
    assert SECRET not in caplog.text and API_KEY not in caplog.text


def test_a_connection_without_a_host_sends_its_credentials_nowhere(caplog):
    with caplog.at_level(logging.WARNING, logger="api_poller.partner.connection"):
        assert scoped_connection_headers(connection(password=SECRET), "https://partner.example/p") == {}
    assert "has no host" in caplog.text and "set its host" in caplog.text
    assert SECRET not in caplog.text


def test_a_connection_without_credentials_needs_no_origin():
    assert scoped_connection_headers(connection(), "https://anywhere.example/payload") == {}


@pytest.fixture
def conn_on(monkeypatch) -> Iterator:
    """Point the ``partner_api`` Connection (password + an API key header) at a base URL."""

    def point(base_url: str) -> None:
        monkeypatch.setenv(
            "AIRFLOW_CONN_PARTNER_API",
            connection_env(base_url, password=SECRET, extra={"headers": {"X-API-Key": API_KEY}}),
        )

    yield point


def test_a_job_url_on_another_port_never_receives_the_credentials(conn_on):
    with recording_server(body=ONE_RECORD_API) as partner, recording_server(body=ONE_RECORD_API) as elsewhere:
        conn_on(partner.base_url)
        read_metadata(f"{elsewhere.base_url}/payload")
        read_metadata(f"{partner.base_url}/payload")
    assert len(elsewhere.requests) == 1 and no_credentials_reached(elsewhere)
    [request] = partner.requests  # the Connection's own host still gets them
    assert request.headers["Authorization"] == f"Bearer {SECRET}"
    assert request.headers["X-API-Key"] == API_KEY


def test_a_redirect_from_the_connections_host_is_not_followed_with_credentials(conn_on):
    with recording_server(body=ONE_RECORD_API) as elsewhere:
        target = f"{elsewhere.base_url}/payload?startAt=0&count=1"

        async def redirect(request: web.Request) -> web.Response:
            raise web.HTTPFound(target)

        app = web.Application()
        app.router.add_get("/payload", redirect)
        with serve_in_thread(app) as partner_url:
            conn_on(partner_url)
            with pytest.raises(FatalError, match="a redirect is not followed with the partner Connection"):
                read_metadata(f"{partner_url}/payload")
    assert elsewhere.requests == []


def test_without_credentials_a_redirect_is_still_followed(monkeypatch):
    with recording_server(body=ONE_RECORD_API) as elsewhere:
        target = f"{elsewhere.base_url}/payload?startAt=0&count=1"

        async def redirect(request: web.Request) -> web.Response:
            raise web.HTTPFound(target)

        app = web.Application()
        app.router.add_get("/payload", redirect)
        with serve_in_thread(app) as partner_url:
            read_metadata(f"{partner_url}/payload", replace(SETTINGS, partner_api_conn_id=""))
    assert len(elsewhere.requests) == 1


# -- end to end through the seed DAG ----------------------------------------------------------------


@pytest.fixture
def guarded_partner():
    """A partner API that answers only requests bearing the secret token."""
    refused = []

    async def payload(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {SECRET}":
            refused.append(request.path_qs)
            return web.json_response({"error": "unauthorized"}, status=401)
        start, count = int(request.query["startAt"]), min(int(request.query["count"]), PAGE)
        records = [{"id": i, "payload": f"record {i}"} for i in range(start, min(start + count, TOTAL))]
        return web.json_response({"maxRecordsPerPage": PAGE, "totalRecords": TOTAL, "payload": records})

    app = web.Application()
    app.router.add_get("/payload", payload)
    with serve_in_thread(app) as base_url:
        yield base_url, refused


@pytest.mark.e2e
def test_the_token_is_sent_but_never_stored_or_logged(guarded_partner, airflow_db, aws, monkeypatch, capfd):
    base_url, refused = guarded_partner
    monkeypatch.setenv("API_POLLER_PARTNER_API_CONN_ID", "partner_api")
    monkeypatch.setenv("AIRFLOW_CONN_PARTNER_API", connection_env(base_url, password=SECRET))

    dag_run = run_job({"url": f"{base_url}/payload", "fetch_tasks": 1})

    assert str(dag_run.state) == "success" and refused == []
    assert SECRET not in capfd.readouterr().out  # the task logs
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        values = session.scalars(select(XComModel.value).where(XComModel.run_id == dag_run.run_id)).all()
    assert values and SECRET not in json.dumps(values)  # XCom, page statuses included
    for bucket in (RAW_BUCKET, PROCESSED_BUCKET):
        for key in aws.keys(bucket):
            assert SECRET not in key
            assert SECRET.encode() not in aws.s3.get_object(Bucket=bucket, Key=key)["Body"].read()


@pytest.mark.e2e
def test_without_the_connection_the_partner_refuses_and_the_plan_says_so(
    guarded_partner, airflow_db, aws, capfd
):
    base_url, refused = guarded_partner
    dag_run = run_job({"url": f"{base_url}/payload"})
    assert str(dag_run.state) == "failed" and refused
    assert "HTTP 401" in capfd.readouterr().out


@pytest.mark.e2e
def test_a_job_pointed_at_another_host_runs_without_the_credentials(
    guarded_partner, airflow_db, aws, monkeypatch, caplog
):
    base_url, _ = guarded_partner
    monkeypatch.setenv("API_POLLER_PARTNER_API_CONN_ID", "partner_api")
    monkeypatch.setenv(
        "AIRFLOW_CONN_PARTNER_API",
        connection_env(base_url, password=SECRET, extra={"headers": {"X-API-Key": API_KEY}}),
    )
    with (
        recording_server(body=ONE_RECORD_API) as elsewhere,
        caplog.at_level(logging.WARNING, logger="api_poller.partner.connection"),
    ):
        run_job({"url": f"{elsewhere.base_url}/payload?api_key=mine", "fetch_tasks": 1})
    assert elsewhere.requests and no_credentials_reached(elsewhere)
    # The job URL's own query parameters are the job's, and still sent.
    assert all(request.query.getall("api_key") == ["mine"] for request in elsewhere.requests)
    assert "Credentials of Connection 'partner_api' withheld" in caplog.text
    assert SECRET not in caplog.text and API_KEY not in caplog.text
