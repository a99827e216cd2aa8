"""The status purge through Airflow's CLI, as Amazon MWAA's CLI endpoint runs it."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import pytest

from api_poller import names
from api_poller.operations.retention.mwaa_cli import (
    AirflowCliStatusStore,
    MwaaCli,
    parse_db_clean_rows,
    parse_list_runs,
)
from api_poller.operations.retention.status_purge import purge_expired_status
from tests.unit.operations.retention.seeding import T0

# What `airflow dags list-runs api_poller -o json` and `airflow db clean` print (Airflow 3.3).
LIST_RUNS_OUTPUT = """\
2026-11-28T02:04:18.983433Z [warning  ] Could not import graphviz. [py.warnings]
[{"dag_id": "api_poller", "run_id": "old", "state": "success", "run_after": "2026-11-20T10:00:00+00:00",
  "logical_date": "", "start_date": "2026-11-20T10:00:01+00:00", "end_date": "2026-11-20T10:30:00+00:00"},
 {"dag_id": "api_poller", "run_id": "across", "state": "success", "run_after": "2026-11-25T11:00:00+00:00",
  "logical_date": "", "start_date": "2026-11-25T11:00:01+00:00", "end_date": "2026-11-25T13:00:00+00:00"},
 {"dag_id": "api_poller", "run_id": "now", "state": "running", "run_after": "2026-11-28T11:00:00+00:00",
  "logical_date": "", "start_date": "2026-11-28T11:00:01+00:00", "end_date": ""}]
"""
DB_CLEAN_OUTPUT = "\nChecking table xcom\nFound 18 rows meeting deletion criteria.\nPerforming Delete...\n"


def test_the_purge_through_mwaas_cli_endpoint_lists_runs_then_runs_db_clean() -> None:
    commands = []

    def post(url: str, body: bytes, headers: dict[str, str]) -> Mapping[str, Any]:
        commands.append((url, body.decode(), headers["Authorization"]))
        output = LIST_RUNS_OUTPUT if body.startswith(b"dags list-runs") else DB_CLEAN_OUTPUT
        return {"stdout": base64.b64encode(output.encode()).decode(), "stderr": ""}

    client = SimpleNamespace(
        create_cli_token=lambda Name: {"CliToken": "t0k", "WebServerHostname": Name + ".host"}
    )
    store = AirflowCliStatusStore(MwaaCli(client, "my-env", post=post))
    report = purge_expired_status(store, as_of=T0, retention_days=3)

    assert [c[0] for c in commands] == ["https://my-env.host/aws_mwaa/cli"] * 2
    assert {c[2] for c in commands} == {"Bearer t0k"}
    assert commands[0][1] == f"dags list-runs {names.POLLER_DAG_ID} -o json"
    assert commands[1][1] == (
        "db clean --clean-before-timestamp 2026-11-25T11:00:00+00:00 --tables xcom"
        f" --dag-ids {names.POLLER_DAG_ID} --skip-archive --yes --error-on-cleanup-failure"
    )
    assert report["xcom_rows"] == 18
    assert report["runs_ended_before"] == 1
    assert report["held_back_by"] == ["across"]
    assert report["cutoff"] == "2026-11-25T12:00:00+00:00"


def test_unexpected_cli_output_is_an_error_not_a_silent_no_op() -> None:
    with pytest.raises(RuntimeError, match="no run list"):
        parse_list_runs("DAG: api_poller does not exist in 'dag' table")
    with pytest.raises(RuntimeError, match="unexpected output"):
        parse_db_clean_rows("Table xcom not found.  Skipping.")
    assert parse_list_runs("[]") == []
