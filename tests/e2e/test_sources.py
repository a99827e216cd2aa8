"""Source DAGs (the DAG factory), run by Airflow (``dag.test``) against the simulator and moto.

One sources folder serves the whole module: a source per paginator, each paired with an auth
kind (its own simulator instance, since a simulator serves one auth kind), an incremental source,
a source whose Connection does not exist, and a broken file. The folder and the Connections
(``AIRFLOW_CONN_<ID>``) are set before the DAG folder is parsed, once.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from api_poller_dev.simulator import AuthConfig, SimulatorConfig, run_in_thread

from api_poller import names
from api_poller.adapters.progress import load_job_progress
from api_poller.aws.watermark import read_watermark
from tests.helpers import (
    DEAD_LETTER_QUEUE,
    PROCESSED_BUCKET,
    QUEUE,
    RAW_BUCKET,
    ROOT,
    fetch_task_names,
    task_states,
)

pytestmark = pytest.mark.e2e

TOTAL = 95  # 10 pages of 10, the last one short
PAGE_SIZE = 10
LOGIN, SECRET = "sim-user", "sim-secret"


@dataclass(frozen=True)
class Case:
    paginator: dict[str, Any]
    path: str
    records: str
    auth: str
    planned: bool


CASES = {
    "offset_basic": Case(
        {"type": "offset", "page_size": PAGE_SIZE, "total_path": "meta.total"},
        "/offset/items", "data.items", "basic", planned=True,
    ),
    "page_number_bearer": Case(
        {"type": "page_number", "page_size": PAGE_SIZE, "total_pages_path": "total_pages"},
        "/pages/items", "results", "bearer", planned=True,
    ),
    "cursor_token_api_key_header": Case(
        {"type": "cursor", "cursor_path": "next_cursor", "page_size": PAGE_SIZE},
        "/cursor/items", "items", "api_key_header", planned=False,
    ),
    "cursor_has_more_api_key_query": Case(
        {"type": "cursor", "has_more_path": "has_more", "cursor_key": "id", "cursor_param": "after",
         "page_size": PAGE_SIZE},
        "/cursor-has-more/items", "records", "api_key_query", planned=False,
    ),
    "next_url_body_oauth2": Case(
        {"type": "next_url", "next_url_path": "links.next", "page_size": PAGE_SIZE},
        "/next-body/items", "items", "oauth2_client_credentials", planned=False,
    ),
    "link_header_no_auth": Case(
        {"type": "next_url", "link_header": True, "limit_param": "per_page", "page_size": PAGE_SIZE},
        "/link/items", "$", "none", planned=False,
    ),
}  # fmt: skip
INCREMENTAL = "incremental_orders"
NO_CONNECTION = "no_connection"
POISON_PAGE = 12  # offsets 120-129: reached only once records are appended twice


def quiet(**settings: Any) -> SimulatorConfig:
    return SimulatorConfig(
        total_records=TOTAL, page_size=PAGE_SIZE, latency_ms=0, error_rate=0, seed=5, **settings
    )


def connection(base_url: str, auth: str) -> str:
    host, port = base_url.removeprefix("http://").split(":")
    document: dict[str, Any] = {"conn_type": "http", "host": host, "port": int(port), "schema": "http"}
    if auth != "none":
        document.update(login=LOGIN, password=SECRET)
    return json.dumps(document)


def auth_block(kind: str, base_url: str) -> dict[str, Any]:
    if kind == "oauth2_client_credentials":
        return {"type": kind, "token_url": f"{base_url}/oauth/token"}
    return {"type": kind}


def write_source(folder: Path, name: str, **fields: Any) -> None:
    (folder / f"{name}.yaml").write_text(yaml.safe_dump({"name": name, **fields}, sort_keys=False))


@dataclass
class Sources:
    urls: dict[str, str]  # source name -> its simulator's base URL
    folder: Path
    bag: Any  # the DagBag of the project's dags folder, with this module's sources


@pytest.fixture(scope="module")
def sources(airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sources]:
    folder = tmp_path_factory.mktemp("sources")
    urls: dict[str, str] = {}
    with ExitStack() as stack, pytest.MonkeyPatch.context() as env:
        for name, case in CASES.items():
            auth = AuthConfig(kind=case.auth, login=LOGIN, secret=SECRET)
            urls[name] = base_url = stack.enter_context(run_in_thread(quiet(auth=auth)))
            write_source(
                folder, name, connection_id=f"e2e_{name}", path=case.path, records=case.records,
                primary_key="id", paginator=case.paginator, auth=auth_block(case.auth, base_url),
            )  # fmt: skip
            env.setenv(f"AIRFLOW_CONN_E2E_{name.upper()}", connection(base_url, case.auth))
        urls[INCREMENTAL] = base_url = stack.enter_context(
            run_in_thread(quiet(poison_pages=frozenset({POISON_PAGE})))
        )
        write_source(
            folder, INCREMENTAL, connection_id="e2e_incremental", path="/offset/items",
            records="data.items", primary_key="id",
            paginator={"type": "offset", "page_size": PAGE_SIZE, "total_path": "meta.total"},
            incremental={"cursor_field": "updated_at", "param": "updated_since"},
        )  # fmt: skip
        env.setenv("AIRFLOW_CONN_E2E_INCREMENTAL", connection(base_url, "none"))
        write_source(
            folder, NO_CONNECTION, connection_id="e2e_nowhere", path="/offset/items",
            records="data.items", paginator={"type": "offset", "page_size": PAGE_SIZE},
        )  # fmt: skip
        (folder / "broken.yaml").write_text("name: broken\nconnection_id: x\npath: /a\nrecords: items\n")
        env.setenv("API_POLLER_SOURCES_FOLDER", str(folder))
        from airflow.dag_processing.dagbag import DagBag

        yield Sources(urls, folder, DagBag(dag_folder=str(ROOT / "dags")))


def run_source(sources: Sources, name: str, conf: dict[str, Any] | None = None) -> Any:
    return sources.bag.dags[names.source_dag_id(name)].test(run_conf=conf or {})


def stats(base_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base_url}/stats", timeout=5) as response:
        return dict(json.load(response))


def post(base_url: str, path: str, body: dict[str, Any] | None = None) -> None:
    request = urllib.request.Request(
        f"{base_url}{path}",
        data=json.dumps(body or {}).encode(),
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=5).close()


def job_ids(aws: Any, run_id: str) -> list[Any]:
    from api_poller.core.keys import processed_prefix

    return sorted(record["id"] for record in aws.processed_records(processed_prefix(run_id)))


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_record_lands_exactly_once_whatever_the_paginator_and_auth(sources: Sources, aws, name) -> None:
    dag_run = run_source(sources, name)

    assert str(dag_run.state) == "success", task_states(dag_run)
    assert job_ids(aws, dag_run.run_id) == list(range(TOTAL))  # every record, none twice
    assert [key for key in aws.keys(RAW_BUCKET, "jobs/") if "/status/" not in key] == []  # checkpoints stay
    assert aws.queue_depth(QUEUE) == 0
    assert aws.queue_depth(DEAD_LETTER_QUEUE) == 0
    progress = load_job_progress(names.source_dag_id(name), dag_run.run_id)
    assert progress["FailedToComplete"] == 0
    assert progress["SuccessfullyCompleted"] == progress["Total"] >= TOTAL // PAGE_SIZE
    if CASES[name].planned:
        assert "TotalKnown" not in progress and progress["Total"] == 10
        assert fetch_task_names(dag_run) == ["page-000001 .. page-000010"]  # one task's page range
    else:
        assert progress["TotalKnown"] is True
        assert fetch_task_names(dag_run) == ["walk from page-000001"]
    if CASES[name].auth == "oauth2_client_credentials":
        assert stats(sources.urls[name])["tokens_issued"] >= 1


def test_an_incremental_source_fetches_only_new_pages_and_a_failed_run_keeps_the_watermark(
    sources: Sources, aws
) -> None:
    base_url = sources.urls[INCREMENTAL]
    first = run_source(sources, INCREMENTAL)
    assert str(first.state) == "success", task_states(first)
    assert job_ids(aws, first.run_id) == list(range(TOTAL))
    after_first = read_watermark(aws.s3, PROCESSED_BUCKET, INCREMENTAL)
    assert after_first is not None and after_first.job_id == first.run_id

    post(base_url, "/admin/append", {"count": 25})  # ids 95-119
    post(base_url, "/admin/reset-stats")
    second = run_source(sources, INCREMENTAL)
    assert str(second.state) == "success", task_states(second)
    # updated_since is inclusive: the record at the watermark (94) comes again, then the new ones.
    assert job_ids(aws, second.run_id) == list(range(TOTAL - 1, 120))
    served = stats(base_url)["pages_served"]["/offset/items"]
    assert set(served) == {"94-103", "104-113", "114-119"}  # only the new pages were asked for
    after_second = read_watermark(aws.s3, PROCESSED_BUCKET, INCREMENTAL)
    assert after_second is not None and after_second.job_id == second.run_id
    assert after_second.value > after_first.value

    # Run 3 meets a page whose records lack their primary key: dead-lettered, the job incomplete.
    post(base_url, "/admin/append", {"count": 10})  # ids 120-129, the poisoned page
    third = run_source(sources, INCREMENTAL)
    assert str(third.state) == "failed"
    assert task_states(third)["report"] == "failed"
    assert read_watermark(aws.s3, PROCESSED_BUCKET, INCREMENTAL) == after_second
    # The summary says which page failed and why (the consumer's dead letter), not just "incomplete".
    summary = report_summary(third)
    reasons = summary["failedPages"]
    assert reasons and all("has no 'id'" in reason for reason in reasons.values()), reasons
    assert summary["progress"]["FailedToComplete"] == len(reasons)


def report_summary(dag_run: Any) -> dict[str, Any]:
    """The report step's ``summary`` XCom of a run, from Airflow's database."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        value = session.scalar(
            select(XComModel.value).where(
                XComModel.dag_id == dag_run.dag_id,
                XComModel.run_id == dag_run.run_id,
                XComModel.task_id == names.REPORT_TASK,
                XComModel.key == names.SUMMARY_KEY,
            )
        )
    return json.loads(value) if isinstance(value, str) else value


def test_a_broken_source_file_is_an_import_error_naming_the_file_and_field(sources: Sources) -> None:
    errors = sources.bag.import_errors
    (file,) = errors  # one file reports them: the factory's errors file, holding no DAG
    assert file.endswith("api_poller_source_errors.py"), errors
    message = errors[file]
    assert "broken.yaml: paginator: is required" in message
    # The other sources load, each its own DAG; the broken one has none.
    assert {names.source_dag_id(name) for name in [*CASES, INCREMENTAL, NO_CONNECTION]} <= set(
        sources.bag.dags
    )
    assert names.source_dag_id("broken") not in sources.bag.dags


def test_a_source_whose_connection_does_not_exist_fails_clearly_and_writes_nothing(
    sources: Sources, aws
) -> None:
    dag_run = run_source(sources, NO_CONNECTION)

    states = task_states(dag_run)
    assert str(dag_run.state) == "failed"
    assert states["plan"] == "failed"
    # What the plan task failed with (dag.test's task logs are not reliably capturable here).
    from airflow.sdk.exceptions import AirflowFailException

    from api_poller.adapters.source_dag import task_connection
    from api_poller.sources.spec import load_source

    with pytest.raises(AirflowFailException, match=r"no_connection\.yaml: connection_id: Airflow Connection"):
        task_connection(load_source(sources.folder / f"{NO_CONNECTION}.yaml"))
    assert aws.keys(RAW_BUCKET) == [] and aws.keys(PROCESSED_BUCKET) == []
    assert aws.queue_depth(QUEUE) == 0


def test_a_trigger_that_names_a_url_is_refused_and_nothing_is_written(sources: Sources, aws) -> None:
    """A source's host comes from its Connection only: a conf key the source does not know fails the
    plan (the conf reaches it through the run's params, as a REST API trigger's would)."""
    name = "offset_basic"
    before = stats(sources.urls[name])["requests"]
    dag_run = run_source(sources, name, {"url": "http://elsewhere.example/items"})

    assert str(dag_run.state) == "failed"
    assert task_states(dag_run)["plan"] == "failed"
    assert stats(sources.urls[name])["requests"] == before  # refused before any request
    assert aws.keys(RAW_BUCKET) == [] and aws.keys(PROCESSED_BUCKET) == []
