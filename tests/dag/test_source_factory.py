"""The DAG factory: one DAG per source file; broken files reported, never stopping the others."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from api_poller import names
from api_poller.adapters.source_params import source_conf
from api_poller.core.errors import SourceError
from api_poller.settings import PollerSettings
from api_poller.sources.spec import parse_source
from tests.helpers import ROOT

PLANNED = {
    "name": "acme_orders",
    "description": "Orders from ACME",
    "connection_id": "acme_api",
    "path": "/v1/orders",
    "params": {"status": "all"},
    "records": "data.items",
    "primary_key": "id",
    "paginator": {"type": "offset", "page_size": 100, "total_path": "meta.total"},
    "auth": {"type": "bearer"},
    "schedule": "@daily",
    "overridable_params": ["status"],
    "incremental": {"cursor_field": "updated_at", "param": "updated_since"},
}
WALKED = {
    "name": "acme_events",
    "connection_id": "acme_api",
    "path": "/v1/events",
    "records": "$",
    "paginator": {"type": "next_url", "link_header": True},
}
BROKEN = {
    "unknown_paginator.yaml": {**WALKED, "name": "typo", "paginator": {"type": "offest"}},
    "bad_schedule.yaml": {**WALKED, "name": "bad_schedule", "schedule": "61 * * * *"},
    "same_name_as_a_setting.yaml": {**WALKED, "name": "clash", "overridable_params": ["concurrency"]},
    "tiny_files.yaml": {**WALKED, "name": "tiny_files", "output": {"target_file_size_mb": 0}},
    "unknown_notifier.yaml": {
        **WALKED,
        "name": "unknown_notifier",
        "alerts": {"notifier": {"type": "custom", "class": "acme.notifications.PagerNotifier"}},
    },
}


def write(folder: Path, file: str, document: Any) -> None:
    (folder / file).write_text(document if isinstance(document, str) else yaml.safe_dump(document))


@pytest.fixture(scope="module")
def bag(airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    folder = tmp_path_factory.mktemp("sources")
    write(folder, "orders.yaml", PLANNED)
    write(folder, "events.yml", WALKED)
    for file, document in BROKEN.items():
        write(folder, file, document)
    write(folder, "not_yaml.yaml", "name: [unclosed\n")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("API_POLLER_SOURCES_FOLDER", str(folder))
        from airflow.dag_processing.dagbag import DagBag

        yield DagBag(dag_folder=str(ROOT / "dags"))


def test_every_valid_source_is_its_own_dag_next_to_the_seed(bag: Any) -> None:
    assert {"api_poller", "api_poller__acme_orders", "api_poller__acme_events"} <= set(bag.dags)
    assert not any(dag_id.startswith(names.SOURCE_DAG_PREFIX + "typo") for dag_id in bag.dags)


def test_broken_source_files_are_one_import_error_naming_each_file_and_field(bag: Any) -> None:
    (file,) = bag.import_errors  # the valid sources' file has none: its DAGs are not made stale
    assert file.endswith("api_poller_source_errors.py")
    message = bag.import_errors[file]
    assert "unknown_paginator.yaml: paginator.type: unknown paginator 'offest'" in message
    assert "bad_schedule.yaml: schedule: '61 * * * *'" in message
    assert (
        "unknown_notifier.yaml: alerts.notifier.class: cannot import 'acme.notifications.PagerNotifier'"
        in message
    )
    assert "same_name_as_a_setting.yaml: overridable_params[0]" in message
    assert "not_yaml.yaml: is not valid YAML at line" in message
    assert "tiny_files.yaml: output.target_file_size_mb: must be between 1 and 5120, got 0" in message
    assert "6 source file(s)" in message


def test_the_example_consumer_is_scheduled_on_every_valid_sources_snapshots_and_starts_paused(
    bag: Any,
) -> None:
    consumer = bag.dags[names.SNAPSHOT_CONSUMER_DAG_ID]
    scheduled_on = {asset.name for asset in consumer.timetable.asset_condition.objects}
    assert scheduled_on == {"api_poller__acme_orders", "api_poller__acme_events"}
    assert consumer.is_paused_upon_creation is True


def test_a_source_dag_reads_like_the_seed_dag(bag: Any) -> None:
    dag = bag.dags["api_poller__acme_orders"]
    downstream = {task.task_id: sorted(task.downstream_task_ids) for task in dag.tasks}
    # An incremental source plans after prepare_resources (the watermark is in the processed bucket).
    assert downstream["prepare_resources"] == ["fetch_pages", "plan", "process.consume_page_messages"]
    assert downstream["plan"] == ["fetch_pages", "process.consume_page_messages"]
    assert downstream["fetch_pages"] == ["process.consume_page_messages", "report"]
    assert downstream["process.consume_page_messages"] == ["report"]
    assert dag.task_dict["process.consume_page_messages"].trigger_rule == "always"
    assert dag.task_dict["report"].trigger_rule == "all_done"
    # A complete job's snapshot is published after a successful report, as the source's Asset.
    assert downstream["report"] == ["publish"]
    publish = dag.task_dict["publish"]
    assert publish.trigger_rule == "all_success"
    assert [(asset.name, asset.uri) for asset in publish.outlets] == [
        ("api_poller__acme_orders", "s3://api-poller-processed/snapshots/acme_orders")
    ]
    walked = bag.dags["api_poller__acme_events"]
    assert sorted(walked.task_dict["prepare_resources"].downstream_task_ids) == [
        "fetch_pages",
        "process.consume_page_messages",
    ]


def test_a_source_dag_has_its_schedule_form_tags_and_description(bag: Any) -> None:
    dag = bag.dags["api_poller__acme_orders"]
    assert dag.schedule == "@daily"
    assert bag.dags["api_poller__acme_events"].schedule is None  # manual runs only
    assert dag.max_active_runs == 1
    assert names.SOURCE_DAG_TAG in dag.tags
    assert "acme_api" in dag.doc_md and "Orders from ACME" in dag.doc_md and "updated_at" in dag.doc_md
    assert dag.params.dump() == {
        "status": "all",
        "full_refresh": False,
        "concurrency": 25,
        "fetch_tasks": None,
    }
    for name in ("status", "full_refresh", "concurrency", "fetch_tasks"):
        assert dag.params.get_param(name).description, name


def test_the_form_and_the_api_conf_become_the_plan_steps_conf() -> None:
    spec = parse_source(PLANNED, "orders.yaml")
    settings = PollerSettings()
    form = {"status": "open", "full_refresh": True, "concurrency": 4, "fetch_tasks": None}
    assert source_conf(spec, form, settings) == {
        "params": {"status": "open"},
        "full_refresh": True,
        "concurrency": 4,
    }
    # The API may nest the query parameters; a key the form does not know is passed on, so the
    # plan step refuses it by name (a trigger never sets the host).
    api = {**form, "status": None, "params": {"status": "closed"}, "url": "https://elsewhere.example"}
    conf = source_conf(spec, api, settings)
    assert conf["params"] == {"status": "closed"} and conf["url"] == "https://elsewhere.example"


def test_an_overridable_param_named_like_a_setting_is_a_source_error() -> None:
    from api_poller.adapters.source_params import source_fields

    spec = parse_source({**WALKED, "overridable_params": ["fetch_tasks"]}, "clash.yaml")
    with pytest.raises(SourceError, match=r"clash\.yaml: overridable_params\[0\]: 'fetch_tasks'"):
        source_fields(spec, PollerSettings())


def test_valid_sources_parse_without_network_and_without_any_import_error(tmp_path: Path) -> None:
    """The whole DAG folder, as a dag-processor parses it, with only valid sources: each source's
    DAG once (the errors file, which only checks them, holds none), no socket opened."""
    write(tmp_path, "orders.yaml", PLANNED)
    write(tmp_path, "events.yaml", WALKED)
    code = (
        "import json, socket\n"
        "def refuse(*a, **k): raise AssertionError('network access at parse time')\n"
        "socket.socket.connect = refuse\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "bag = DagBag(dag_folder='dags')\n"
        "print(json.dumps({'dags': sorted(bag.dags), 'errors': bag.import_errors}))\n"
    )
    env = {**os.environ, "API_POLLER_SOURCES_FOLDER": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    parsed = json.loads(result.stdout.strip().splitlines()[-1])
    assert parsed["errors"] == {}
    assert [dag for dag in parsed["dags"] if dag.startswith(names.SOURCE_DAG_PREFIX)] == [
        "api_poller__acme_events",
        "api_poller__acme_orders",
    ]


def test_the_default_sources_folder_ships_without_sources() -> None:
    folder = ROOT / "dags" / "sources"
    assert (folder / "README.md").is_file()
    assert not list(folder.glob("*.yaml")) and not list(folder.glob("*.yml"))


def test_the_last_step_is_a_teardown_after_every_other_so_the_run_still_fails_on_the_report(bag: Any) -> None:
    for dag_id in ("api_poller", "api_poller__acme_orders", "api_poller__acme_events"):
        dag = bag.dags[dag_id]
        last = dag.task_dict[names.END_OF_JOB_TASK]
        assert last.is_teardown and last.retries == 0  # a retry could send a second alert
        assert [task.task_id for task in dag.leaves] == [names.END_OF_JOB_TASK]
        # A source's publish step follows its report; the seed DAG ends with the report.
        before_last = names.REPORT_TASK if dag_id == "api_poller" else names.PUBLISH_TASK
        assert sorted(last.upstream_task_ids) == [before_last]
