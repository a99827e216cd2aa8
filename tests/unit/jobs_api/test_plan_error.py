"""A plan that fails records why (the ``plan_error`` XCom), and the job API shows it as ``Error``.

The seed DAG runs in process (``dag.test``) against a refused URL, as the e2e bad-input tests do.
"""

from __future__ import annotations

import socket

import pytest

from tests.helpers import run_job, task_states
from tests.unit.jobs_api.conftest import JobsApi
from tests.unit.jobs_api.test_routes import job_path


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"http://127.0.0.1:{closed_port()}/payload", "connection to"),
        ("http://user:s3cr3t-word@127.0.0.1/payload", "must not contain credentials"),
    ],
    ids=["refused", "credentials-in-url"],
)
def test_a_failed_plan_records_its_error_for_the_job_api(jobs_api: JobsApi, url: str, expected: str):
    from airflow.utils.session import create_session

    from api_poller.adapters.progress import load_plan_error

    dag_run = run_job({"url": url})
    assert str(dag_run.state) == "failed" and task_states(dag_run)["plan"] == "failed"
    with create_session() as session:
        error = load_plan_error(dag_run.dag_id, dag_run.run_id, session)
    assert error is not None and error.startswith("cannot plan the job: ") and expected in error
    assert "s3cr3t-word" not in error  # never a secret
    job = jobs_api.client.get(job_path(dag_run.run_id)).json()
    assert (job["Error"], job["FailedReasons"], job["State"]) == (error, [], "failed")
