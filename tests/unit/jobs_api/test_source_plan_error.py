"""A source DAG's failed plan records why too: a source whose Connection does not exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from api_poller import names
from tests.helpers import task_states

ROOT = Path(__file__).resolve().parents[3]
SOURCE = "nowhere"


def test_a_source_plan_without_its_connection_records_its_error(
    airflow_db: Path, aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils.session import create_session

    from api_poller.adapters.progress import load_plan_error

    (tmp_path / f"{SOURCE}.yaml").write_text(
        f"name: {SOURCE}\nconnection_id: no_such_connection\npath: /items\nrecords: items\n"
        "paginator: {type: offset, page_size: 10}\n"
    )
    monkeypatch.setenv("API_POLLER_SOURCES_FOLDER", str(tmp_path))
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    dag_run = bag.dags[names.source_dag_id(SOURCE)].test(run_conf={})
    assert task_states(dag_run)["plan"] == "failed"
    with create_session() as session:
        error = load_plan_error(dag_run.dag_id, dag_run.run_id, session)
    assert error is not None and error.startswith(f"source {SOURCE!r}: cannot plan the job: "), error
    assert "no_such_connection" in error
