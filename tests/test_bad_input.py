"""Bad job input fails the plan step with a message naming the problem, and writes nothing."""

from __future__ import annotations

import json
import socket

import pytest
from aiohttp import web

from tests.helpers import (
    DEAD_LETTER_QUEUE,
    PROCESSED_BUCKET,
    QUEUE,
    RAW_BUCKET,
    run_job,
    serve_in_thread,
    task_states,
)


def meta(**fields) -> str:
    return json.dumps(fields)


# What the fake partner API answers to the metadata request, and what the error must mention.
METADATA_CASES = {
    "non-json": (200, "<html>maintenance</html>", "not JSON"),
    "json-list": (200, "[1, 2, 3]", "must be a JSON object"),
    "missing-total": (200, meta(maxRecordsPerPage=100, payload=[]), "'totalRecords'"),
    "zero-total": (200, meta(maxRecordsPerPage=100, totalRecords=0), "'totalRecords' must be positive"),
    "negative-total": (200, meta(maxRecordsPerPage=100, totalRecords=-5), "'totalRecords' must be positive"),
    "string-total": (200, meta(maxRecordsPerPage=100, totalRecords="x"), "'totalRecords' must be an integer"),
    "missing-page-size": (200, meta(totalRecords=10), "'maxRecordsPerPage'"),
    "zero-page-size": (
        200,
        meta(maxRecordsPerPage=0, totalRecords=10),
        "'maxRecordsPerPage' must be positive",
    ),
    "not-found": (404, "no such endpoint", "HTTP 404"),
}


@pytest.fixture(scope="module")
def fake_partner():
    """A partner API whose /<case>/payload answers that case's metadata response."""

    async def answer(request: web.Request) -> web.Response:
        status, body, _ = METADATA_CASES[request.match_info["case"]]
        return web.Response(status=status, text=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/{case}/payload", answer)
    with serve_in_thread(app) as base_url:
        yield base_url


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_plan_failed_and_nothing_written(dag_run, aws, task_log: str, expected: str) -> None:
    states = task_states(dag_run)
    assert states["plan"] == "failed"
    assert "fetch_pages" not in states or states["fetch_pages"] == "upstream_failed"
    # The task log (dag.test prints it) carries the reason the user needs.
    failure = [line for line in task_log.splitlines() if "cannot plan the job" in line]
    assert failure and expected in failure[-1], failure
    assert aws.keys(RAW_BUCKET) == [] and aws.keys(PROCESSED_BUCKET) == []
    assert aws.queue_depth(QUEUE) == 0 and aws.queue_depth(DEAD_LETTER_QUEUE) == 0


@pytest.mark.e2e
@pytest.mark.parametrize("case", sorted(METADATA_CASES))
def test_bad_metadata_fails_the_plan_step(case, fake_partner, airflow_db, aws, capfd):
    dag_run = run_job({"url": f"{fake_partner}/{case}/payload"})
    task_log = capfd.readouterr().out
    assert_plan_failed_and_nothing_written(dag_run, aws, task_log, METADATA_CASES[case][2])


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("conf", "expected"),
    [
        ({}, "url is missing"),
        ({"url": "ftp://partner.example/payload"}, "must use http or https"),
        ({"url": "http:///payload"}, "has no host"),
        ({"url": f"http://127.0.0.1:{closed_port()}/payload"}, "connection to"),
    ],
    ids=["no-url", "ftp-scheme", "no-host", "unreachable"],
)
def test_bad_job_request_fails_the_plan_step(conf, expected, airflow_db, aws, capfd):
    dag_run = run_job(conf)
    assert_plan_failed_and_nothing_written(dag_run, aws, capfd.readouterr().out, expected)
