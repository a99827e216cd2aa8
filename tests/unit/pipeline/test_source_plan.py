"""plan_source_job: the trigger's conf is checked against the source, the first page decides
between planned pages and a walk, the watermark is sent for an incremental source, and bad input
is a clear error before anything is written."""

from __future__ import annotations

import json
import urllib.request
from dataclasses import replace

import pytest
from api_poller_dev.simulator import Misbehaviour, SimulatorConfig, recording_server, run_in_thread

from api_poller.aws.watermark import advance_watermark, read_watermark
from api_poller.core.errors import FatalError, InvalidJobRequest, ResponseShapeError, SourceError
from api_poller.pipeline.source_plan import plan_source_job, source_connection
from api_poller.sources.spec import IncrementalSpec

from .source_support import QUIET, SETTINGS, Conn, run_source_job, source

JOB = "manual__plan"
FIRST_PAGE = {"items": [{"id": 1, "updated_at": "2025-01-01T00:00:00Z"}], "next_cursor": None}


def first_query(spec, conf=None, watermark=None) -> dict[str, list[str]]:
    """The query of the one request the plan makes, as a recording server saw it."""
    with recording_server(body=FIRST_PAGE) as api:
        plan_source_job(spec, JOB, conf, SETTINGS, Conn(host=api.base_url), watermark)
        (request,) = api.requests
    return {name: request.query.getall(name) for name in request.query}


def incremental_source(**fields):
    incremental = IncrementalSpec(cursor_field="updated_at", param="updated_since", **fields)
    return replace(
        source("cursor", params={"status": "all"}, overridable_params=["status"]), incremental=incremental
    )


def test_the_plan_is_a_json_document_with_the_walk_from_page_one() -> None:
    with recording_server(body=FIRST_PAGE) as api:
        plan = plan_source_job(source("cursor"), JOB, None, SETTINGS, Conn(host=api.base_url), None)
    assert json.loads(json.dumps(plan)) == plan
    assert plan["mode"] == "walk" and plan["total_pages"] is None
    assert plan["batches"] == [{"first_page": 1, "last_page": 1, "page_rule": None}]
    assert plan["base_request"] == {"url": f"{api.base_url}/cursor/items", "params": [], "page": 1}
    assert plan["records_path"] == "items" and plan["primary_key"] == "id"


def test_conf_may_override_an_allowed_param_only() -> None:
    spec = source("cursor", params={"status": "all"}, overridable_params=["status"])
    assert first_query(spec, {"params": {"status": "open"}})["status"] == ["open"]
    with pytest.raises(InvalidJobRequest, match=r"params.region: source 'acme' does not let a trigger set"):
        first_query(spec, {"params": {"region": "eu"}})


@pytest.mark.parametrize("key", ["url", "host", "base_url"])
def test_conf_can_never_name_the_host(key: str) -> None:
    with recording_server(body=FIRST_PAGE) as api:
        with pytest.raises(InvalidJobRequest, match="comes from its file and its Connection only"):
            plan_source_job(
                source("cursor"), JOB, {key: "http://evil.example"}, SETTINGS, Conn(host=api.base_url), None
            )
        assert api.requests == []


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"full_refresh": "yes"}, "full_refresh must be true or false"),
        ({"concurrency": 0}, "concurrency must be a whole number"),
        ({"params": ["status"]}, "params must be a mapping"),
        ({"params": {"status": {"nested": 1}}}, "must be a string or a number"),
    ],
)
def test_bad_conf_values_are_refused_by_name(conf, message: str) -> None:
    spec = source("cursor", overridable_params=["status"])
    with pytest.raises(InvalidJobRequest, match=message):
        plan_source_job(spec, JOB, conf, SETTINGS, Conn(host="http://127.0.0.1:9"), None)


def test_the_watermark_minus_lookback_is_sent_in_the_incremental_param() -> None:
    spec = incremental_source(lookback=60)
    query = first_query(spec, watermark="2025-01-01T01:00:00Z")
    assert query["updated_since"] == ["2025-01-01T00:59:00Z"]
    assert query["status"] == ["all"]


def test_a_filter_template_carries_the_watermark() -> None:
    spec = replace(
        incremental_source(),
        incremental=IncrementalSpec(
            cursor_field="id", param="filter", filter_template="id>={value}", lookback=5
        ),
    )
    assert first_query(spec, watermark=100)["filter"] == ["id>=95"]


def test_without_a_watermark_the_initial_value_is_sent_and_full_refresh_sends_nothing() -> None:
    spec = incremental_source(initial_value="2024-06-01T00:00:00Z", lookback=3600)
    assert first_query(spec)["updated_since"] == ["2024-06-01T00:00:00Z"]
    assert "updated_since" not in first_query(spec, {"full_refresh": True}, watermark="2025-01-01T00:00:00Z")


def test_a_records_path_that_matches_nothing_is_a_clear_error_naming_it() -> None:
    spec = source("cursor", records="data.rows")
    with recording_server(body=FIRST_PAGE) as api, pytest.raises(ResponseShapeError) as raised:
        plan_source_job(spec, JOB, None, SETTINGS, Conn(host=api.base_url), None)
    assert "first page" in str(raised.value) and "'data.rows' matches nothing" in str(raised.value)


def test_a_total_that_is_not_a_number_is_a_clear_error_at_plan_time() -> None:
    config = SimulatorConfig(total_records=50, misbehaviour=Misbehaviour(total_not_a_number=True), **QUIET)
    not_a_number = r"'meta\.total' is 'lots'"
    with run_in_thread(config) as base_url, pytest.raises(ResponseShapeError, match=not_a_number):
        plan_source_job(source("offset_total"), JOB, None, SETTINGS, Conn(host=base_url), None)


def test_a_connection_without_a_host_is_a_clear_error() -> None:
    with pytest.raises(FatalError, match="Connection 'partner' has no host"):
        plan_source_job(source("cursor"), JOB, None, SETTINGS, Conn(host=""), None)


def test_an_incremental_sync_fetches_only_what_changed_since_the_watermark(aws) -> None:
    spec = replace(
        source("offset_total"),
        incremental=IncrementalSpec(cursor_field="updated_at", param="updated_since"),
    )
    with run_in_thread(SimulatorConfig(total_records=40, page_size=10, **QUIET)) as base_url:
        first = run_source_job(aws, spec, Conn(host=base_url), job_id="run-1")
        high = max(page.max_cursor for page in first.processed.values())
        advance_watermark(aws.s3, SETTINGS.processed_bucket, "acme", high, job_id="run-1")
        request = urllib.request.Request(
            f"{base_url}/admin/append", data=b'{"count": 15}', headers={"Content-Type": "application/json"}
        )
        urllib.request.urlopen(request).close()
        watermark = read_watermark(aws.s3, SETTINGS.processed_bucket, "acme")
        assert watermark is not None
        second = run_source_job(aws, spec, Conn(host=base_url), watermark=watermark.value, job_id="run-2")

    assert sorted(record["id"] for record in first.records) == list(range(40))
    # updated_since is inclusive: the record at the watermark comes again, then the 15 new ones.
    assert sorted(record["id"] for record in second.records) == list(range(39, 55))
    assert second.plan["total_pages"] == 2
    assert second.plan["incremental"] == {"param": "updated_since", "value": high, "watermark": high}


def test_the_sources_connection_is_read_from_airflow_and_a_missing_one_is_named(monkeypatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_PARTNER", '{"conn_type": "http", "host": "api.example", "schema": "https"}'
    )
    assert source_connection(source("cursor")).host == "api.example"
    missing = replace(source("cursor"), connection_id="nowhere")
    with pytest.raises(
        SourceError, match=r"cursor\.yaml: connection_id: Airflow Connection 'nowhere' does not exist"
    ):
        source_connection(missing)
