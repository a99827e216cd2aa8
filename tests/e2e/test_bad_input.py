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
    "absurd-total": (200, meta(maxRecordsPerPage=100, totalRecords=10**12), "exceeds the limit"),
    "bool-total": (200, meta(maxRecordsPerPage=100, totalRecords=True), "'totalRecords' must be an integer"),
    "html-error-page": (503, "<html><h1>Service Unavailable</h1></html>", "HTTP 503"),
    "oversized": (200, meta(maxRecordsPerPage=100, totalRecords=5, padding="x" * 300_000), "above the limit"),
}


VALID = (200, meta(maxRecordsPerPage=100, totalRecords=10, payload=[]), "")


@pytest.fixture(scope="module")
def fake_partner():
    """A partner API whose /<case>/payload answers that case's metadata response."""

    async def answer(request: web.Request) -> web.Response:
        status, body, _ = (
            VALID if request.match_info["case"] == "valid" else METADATA_CASES[request.match_info["case"]]
        )
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
    assert str(dag_run.state) == "failed"
    assert states["plan"] == "failed"
    assert "fetch_pages" not in states or states["fetch_pages"] == "upstream_failed"
    # The task log (dag.test prints it) carries the reason the user needs.
    failure = [line for line in task_log.splitlines() if "cannot plan the job" in line]
    assert failure and expected in failure[-1], failure
    assert aws.keys(RAW_BUCKET) == [] and aws.keys(PROCESSED_BUCKET) == []
    assert aws.queue_depth(QUEUE) == 0 and aws.queue_depth(DEAD_LETTER_QUEUE) == 0


@pytest.mark.e2e
@pytest.mark.parametrize("case", sorted(METADATA_CASES))
def test_bad_metadata_fails_the_plan_step(case, fake_partner, airflow_db, aws, capfd, monkeypatch):
    monkeypatch.setenv("API_POLLER_MAX_RESPONSE_BYTES", "100000")
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
        ({"url": "http://169.254.169.254/latest/meta-data/"}, "not in API_POLLER_URL_ALLOWLIST"),
        ({"url": "http://user:secret@127.0.0.1/payload"}, "must not contain credentials"),
    ],
    ids=[
        "no-url",
        "ftp-scheme",
        "no-host",
        "unreachable",
        "metadata-address",
        "credentials-in-url",
    ],
)
def test_bad_job_request_fails_the_plan_step(conf, expected, airflow_db, aws, capfd):
    dag_run = run_job(conf)
    assert_plan_failed_and_nothing_written(dag_run, aws, capfd.readouterr().out, expected)


@pytest.mark.e2e
def test_a_page_size_above_the_apis_maximum_is_refused(fake_partner, airflow_db, aws, capfd):
    dag_run = run_job({"url": f"{fake_partner}/valid/payload", "page_size": 500})
    task_log = capfd.readouterr().out
    assert_plan_failed_and_nothing_written(dag_run, aws, task_log, "exceeds the API's maxRecordsPerPage 100")


@pytest.mark.e2e
def test_a_private_address_is_refused_without_an_allowlist(fake_partner, airflow_db, aws, capfd, monkeypatch):
    monkeypatch.setenv("API_POLLER_URL_ALLOWLIST", "")
    dag_run = run_job({"url": f"{fake_partner}/valid/payload"})
    task_log = capfd.readouterr().out
    assert_plan_failed_and_nothing_written(dag_run, aws, task_log, "resolves to non-public address 127.0.0.1")


@pytest.mark.e2e
@pytest.mark.parametrize(
    "conf",
    [{"url": ["http://127.0.0.1/payload"]}, {"url": "http://127.0.0.1/p", "concurrency": 0}],
    ids=["url-not-a-string", "concurrency-zero"],
)
def test_params_of_the_wrong_type_are_refused_when_triggering(conf, airflow_db, aws):
    """The trigger form / REST API refuse these before a run even exists, naming the param."""
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(
        ParamValidationError, match=f"Invalid input for param {next(iter(conf.keys().__reversed__()))}"
    ):
        run_job(conf)
    assert aws.keys(RAW_BUCKET) == []
