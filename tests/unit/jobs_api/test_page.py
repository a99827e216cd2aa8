"""The progress page: its configuration is embedded safely, and it knows where the API is."""

from __future__ import annotations

import json
import re

from api_poller.jobs_api.page import render_page, run_path


def embedded_config(html: str) -> dict:
    [config] = re.findall(r'<script id="config" type="application/json">(.*?)</script>', html, re.S)
    return json.loads(config)


def test_the_page_knows_where_the_api_and_the_airflow_ui_are():
    config = embedded_config(render_page("/base/api-poller", "/base"))
    assert (config["apiBase"], config["airflowBase"], config["dagId"]) == (
        "/base/api-poller",
        "/base",
        "api_poller",
    )
    assert config["activeStates"] == ["queued", "running"]


def test_the_embedded_configuration_cannot_close_its_script_element():
    html = render_page("/x</script><script>alert(1)</script>", "")
    assert "</script><script>alert(1)" not in html
    assert embedded_config(html)["apiBase"] == "/x</script><script>alert(1)</script>"


def test_the_page_acts_only_as_the_job_detail_allows_after_asking_first():
    """The buttons themselves are driven in a browser (tests/integration/test_jobs_api.py)."""
    html = render_page("", "")
    for action, allowed in (("rerun-failed", "RerunFailed"), ("redrive", "Redrive"), ("replay", "Replay")):
        assert f'name: "{action}", allowed: "{allowed}"' in html
    assert "job.Actions[action.allowed]" in html and "window.confirm(" in html
    assert 'headers["Idempotency-Key"]' in html


def test_a_run_path_quotes_the_run_id():
    assert run_path("api_poller", "manual__2026-12-02T05:00:00+00:00") == (
        "/dags/api_poller/runs/manual__2026-12-02T05%3A00%3A00%2B00%3A00"
    )


def test_a_run_path_names_the_jobs_own_dag():
    assert (
        run_path("api_poller__acme_orders", "scheduled__x")
        == "/dags/api_poller__acme_orders/runs/scheduled__x"
    )


def test_the_page_has_a_source_column_and_shows_a_walks_total_as_open():
    html = render_page("", "")
    assert "<th>Source</th>" in html and "job.Source" in html
    assert "TotalKnown === false" in html and "+ pages (walking)" in html
