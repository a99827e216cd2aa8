"""The status purge against the metadata database: reaching it from a task, and running it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from api_poller import names
from api_poller.operations.retention.metadata_db import (
    BLOCKED_DB_URL,
    MetadataDbStatusStore,
    MetadataDbUnavailable,
    metadata_db_environment,
    run_purge_process,
    sqlalchemy_url,
)
from api_poller.operations.retention.status_purge import purge_expired_status
from tests.unit.operations.retention.seeding import (
    DAY,
    POLLER_XCOMS,
    T0,
    make_run,
    sync_dags_to_db,
    xcom_counts,
)


def test_the_purge_process_gets_the_database_from_the_connection_when_the_worker_is_blocked() -> None:
    blocked = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": BLOCKED_DB_URL,
        "AIRFLOW__CORE__SQL_ALCHEMY_CONN": BLOCKED_DB_URL,
        "OTHER": "kept",
    }
    env = metadata_db_environment(blocked, "postgresql+psycopg2://airflow@db/airflow")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == "postgresql+psycopg2://airflow@db/airflow"
    assert "AIRFLOW__CORE__SQL_ALCHEMY_CONN" not in env and env["OTHER"] == "kept"

    with pytest.raises(MetadataDbUnavailable, match="API_POLLER_METADATA_DB_CONN_ID"):
        metadata_db_environment(blocked)
    with_cmd = {**blocked, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD": "cat /run/secrets/db"}
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in metadata_db_environment(with_cmd)
    unblocked = {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "sqlite:////tmp/a.db"}
    assert metadata_db_environment(unblocked) == unblocked


@pytest.mark.parametrize(
    ("uri", "extra", "expected"),
    [
        (
            "postgresql+psycopg2://u:p%40ss@db:5432/airflow",
            None,
            "postgresql+psycopg2://u:p%40ss@db:5432/airflow",
        ),
        ("postgres://u:p@db:5432/airflow", None, "postgresql://u:p@db:5432/airflow"),
        ("sqlite:////srv/airflow/airflow.db", None, "sqlite:////srv/airflow/airflow.db"),
        ("aws://", {"sql_alchemy_conn": "mysql://x@y/z"}, "mysql://x@y/z"),
    ],
)
def test_sqlalchemy_url_of_a_connection(uri: str, extra: dict[str, str] | None, expected: str) -> None:
    from airflow.models.connection import Connection

    connection = Connection(conn_id="metadata_db", uri=uri)
    if extra:
        connection.set_extra(json.dumps(extra))
    assert sqlalchemy_url(connection) == expected


def test_dry_run_reports_what_would_be_purged_and_changes_nothing(airflow_db: Path) -> None:
    from airflow.utils.session import create_session

    sync_dags_to_db()
    run_id = f"retention__dry_{time.time_ns()}"
    with create_session() as session:
        make_run(session, names.POLLER_DAG_ID, run_id, T0 - 400 * DAY, T0 - 399 * DAY, POLLER_XCOMS)
        report = purge_expired_status(
            MetadataDbStatusStore(session), as_of=T0 - 390 * DAY, retention_days=3, dry_run=True
        )
        assert report["xcom_rows"] == len(POLLER_XCOMS)
        assert report["command"].endswith("--dry-run")
        assert xcom_counts(session, names.POLLER_DAG_ID, [run_id]) == {run_id: len(POLLER_XCOMS)}


def test_the_purge_process_finds_the_package_wherever_it_was_started(
    airflow_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker imports api_poller from the dags folder (sys.path), which its subprocesses do not
    # inherit: no PYTHONPATH, and a working directory with nothing of the checkout in it.
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    monkeypatch.chdir(tmp_path)

    report = run_purge_process(as_of=T0, retention_days=3, dry_run=True, env=env)

    assert (report["dag_id"], report["dry_run"]) == (names.POLLER_DAG_ID, True)
    assert report["cutoff"] == (T0 - 3 * DAY).isoformat()
