"""Partner API credentials come from an Airflow Connection and never leak into logs, XCom or S3."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from aiohttp import web

from api_poller.partner.connection import connection_headers
from tests.helpers import PROCESSED_BUCKET, RAW_BUCKET, run_job, serve_in_thread

SECRET = "s3cr3t-token-7f2a"
TOTAL, PAGE = 300, 100


def connection(login=None, password=None, extra=None):
    return SimpleNamespace(login=login, password=password, extra_dejson=extra or {})


def test_a_password_alone_is_a_bearer_token():
    assert connection_headers(connection(password="tok")) == {"Authorization": "Bearer tok"}


def test_login_and_password_are_basic_auth():
    assert connection_headers(connection("me", "pw")) == {"Authorization": "Basic bWU6cHc="}


def test_extra_headers_are_sent_as_given():
    headers = connection_headers(connection(extra={"headers": {"X-Api-Key": "k"}}))
    assert headers == {"X-Api-Key": "k"}


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
    monkeypatch.setenv("AIRFLOW_CONN_PARTNER_API", json.dumps({"conn_type": "http", "password": SECRET}))

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
