"""Plan -> fetch (planned or walked) -> process against the simulator and moto: every record of
the API lands exactly once, whatever the paginator; a walk that cannot go on ends with a clear
FailedToComplete reason instead of a crash."""

from __future__ import annotations

import json
import urllib.request
from dataclasses import replace

import pytest
from api_poller_dev.simulator import Misbehaviour, SimulatorConfig, recording_server, run_in_thread

from api_poller.core.keys import raw_payload_key
from api_poller.core.lifecycle import PageState
from api_poller.core.planning import batch_page_numbers
from api_poller.pipeline.process import PageProcessingError
from api_poller.pipeline.source_plan import batch_requests, plan_source_job

from .source_support import (
    PAGINATED,
    QUIET,
    SETTINGS,
    Conn,
    fetch_all,
    make_resources,
    process_all,
    run_source_job,
    source,
)

TOTAL = 95
PLANNED_KINDS = {"offset_total", "page_number_pages", "page_number_records"}


def sim(**settings: object) -> SimulatorConfig:
    return SimulatorConfig(total_records=TOTAL, page_size=10, **{**QUIET, **settings})


def stats(base_url: str) -> dict:
    with urllib.request.urlopen(f"{base_url}/stats", timeout=5) as response:
        return json.load(response)


@pytest.mark.parametrize("kind", sorted(PAGINATED))
def test_every_record_lands_exactly_once_for_every_paginator(aws, kind: str) -> None:
    with run_in_thread(sim()) as base_url:
        outcome = run_source_job(aws, source(kind), Conn(host=base_url))

    ids = [record["id"] for record in outcome.records]
    assert sorted(ids) == list(range(TOTAL))
    expected_mode = "planned" if kind in PLANNED_KINDS else "walk"
    assert outcome.plan["mode"] == expected_mode
    pages = [f"page-{n:06d}" for n in range(1, 11)]
    assert {page for page, status in outcome.statuses.items() if status["state"] == "Enqueued"} >= set(pages)
    assert sum(outcome.statuses[page]["records"] for page in pages) == TOTAL
    assert all(status["state"] != PageState.FAILED_TO_COMPLETE for status in outcome.statuses.values())
    if expected_mode == "walk":
        (walk,) = outcome.fetches
        assert walk["complete"] is True
        assert walk["pages"] >= 10 and walk["stop_reason"] in {
            "empty_page",
            "no_cursor",
            "has_more_false",
            "no_next_link",
            "last_page",
        }
        last = max(page for page in outcome.statuses if outcome.statuses[page].get("last"))
        assert last == f"page-{walk['pages']:06d}"
    else:
        assert outcome.plan["total_pages"] == 10
        assert sum(fetch["saved"] for fetch in outcome.fetches) == 10


def test_planned_pages_are_split_over_fetch_tasks_with_shares_that_add_up(aws) -> None:
    spec = source("offset_total", concurrency=4, requests_per_second=40)
    with run_in_thread(sim()) as base_url:
        outcome = run_source_job(aws, spec, Conn(host=base_url), conf={"fetch_tasks": 3})

    assert [len(batch_page_numbers(batch)) for batch in outcome.plan["batches"]] == [4, 3, 3]
    assert sum(outcome.plan["concurrency_shares"]) == 4
    assert sum(outcome.plan["rate_shares"]) == pytest.approx(40)
    assert sorted(record["id"] for record in outcome.records) == list(range(TOTAL))


def test_a_repeated_cursor_ends_the_walk_with_a_clear_failed_page_not_a_crash(aws) -> None:
    config = sim(misbehaviour=Misbehaviour(loop_after_pages=3))
    with run_in_thread(config) as base_url:
        outcome = run_source_job(aws, source("cursor"), Conn(host=base_url))

    (walk,) = outcome.fetches
    assert walk["stop_reason"] == "loop" and walk["complete"] is False
    assert outcome.statuses["page-000004"]["state"] == "FailedToComplete"
    assert "loops" in outcome.statuses["page-000004"]["reason"]
    # The pages before the loop were saved, enqueued and processed.
    assert sorted(record["id"] for record in outcome.records) == list(range(30))


def test_a_next_link_to_another_host_is_refused_with_a_clear_reason(aws) -> None:
    with recording_server(body={"items": [{"id": 999}], "links": {"next": None}}) as elsewhere:
        config = sim(misbehaviour=Misbehaviour(foreign_next_url=elsewhere.base_url))
        with run_in_thread(config) as base_url:
            outcome = run_source_job(aws, source("next_url_body"), Conn(host=base_url, password="s3cret"))
        assert elsewhere.requests == []

    (walk,) = outcome.fetches
    assert walk["stop_reason"] == "foreign_link"
    reason = outcome.statuses["page-000002"]["reason"]
    assert "127.0.0.1:" + elsewhere.base_url.rsplit(":", 1)[1] in reason and "refused" in reason
    assert [record["id"] for record in outcome.records] == list(range(10))


def test_max_pages_stops_an_endless_api_and_says_it_was_truncated(aws) -> None:
    config = sim(misbehaviour=Misbehaviour(endless=True))
    with run_in_thread(config) as base_url:
        outcome = run_source_job(aws, source("cursor_has_more", max_pages=4), Conn(host=base_url))

    (walk,) = outcome.fetches
    assert walk["pages"] == 4 and walk["stop_reason"] == "max_pages"
    assert walk["truncated"] is True and walk["complete"] is False
    assert len(outcome.records) == 40


def test_a_retried_planned_task_fetches_only_the_pages_it_has_not_saved(aws) -> None:
    spec = source("offset_total")
    with run_in_thread(sim()) as base_url:
        queue_url = make_resources(aws)
        job = "manual__retry"
        # An earlier try saved page 3 (and left it for processing).
        aws.s3.put_object(
            Bucket=SETTINGS.raw_bucket,
            Key=raw_payload_key(job, "page-000003"),
            Body=json.dumps({"data": {"items": [{"id": n} for n in range(20, 30)]}, "meta": {"total": 95}}),
            Metadata={"records": "10"},
        )
        plan = plan_source_job(spec, job, None, SETTINGS, Conn(host=base_url), None)
        before = stats(base_url)["requests"]
        fetches, statuses = fetch_all(aws, spec, plan, Conn(host=base_url), queue_url, job)
        asked = stats(base_url)["requests"] - before
        records, _ = process_all(aws, queue_url)

    assert asked == 9
    assert fetches[0]["resumed"] == 1 and statuses["page-000003"]["records"] == 10
    assert sorted(record["id"] for record in records) == list(range(TOTAL))


def test_a_record_without_the_declared_primary_key_fails_its_page_naming_the_key(aws) -> None:
    config = sim(poison_pages=frozenset({4}))
    with run_in_thread(config) as base_url, pytest.raises(PageProcessingError, match="page-000005: record 0"):
        run_source_job(aws, source("offset_total"), Conn(host=base_url))


def test_without_a_primary_key_any_record_is_written_and_counted(aws) -> None:
    config = sim(poison_pages=frozenset({4}))
    with run_in_thread(config) as base_url:
        outcome = run_source_job(aws, source("offset_total", primary_key=None), Conn(host=base_url))

    assert len(outcome.records) == TOTAL
    assert sum(page.records for page in outcome.processed.values()) == TOTAL


def test_a_planned_batch_tampered_to_point_elsewhere_sends_nothing_there(aws) -> None:
    """The fetch task trusts the Connection, not its XCom: a base request naming another origin
    fails every page of the batch it makes."""
    spec = source("offset_total", auth={"type": "bearer"})
    with run_in_thread(sim()) as base_url, recording_server() as elsewhere:
        queue_url = make_resources(aws)
        connection = Conn(host=base_url, password="s3cret")
        plan = plan_source_job(spec, "manual__tampered", {"fetch_tasks": 2}, SETTINGS, connection, None)
        plan["base_request"]["url"] = f"{elsewhere.base_url}/offset/items"
        plan["batches"] = [plan["batches"][0]]
        plan["concurrency_shares"], plan["rate_shares"] = [2], [None]
        fetches, statuses = fetch_all(aws, spec, plan, connection, queue_url, "manual__tampered")
        assert elsewhere.requests == []

    assert sorted(statuses) == [f"page-{page:06d}" for page in range(1, 6)]
    assert statuses["page-000002"]["state"] == "FailedToComplete"
    assert "refused to send a request to " + elsewhere.base_url in statuses["page-000002"]["reason"]
    assert "s3cret" not in json.dumps(statuses)
    assert fetches[0]["saved"] == 0


def test_an_older_plan_s_request_list_tampered_to_point_elsewhere_sends_nothing_there(aws) -> None:
    """A run planned before batches were ranges (one request a page) is still fetched, and still
    checked against the Connection."""
    spec = source("offset_total", auth={"type": "bearer"})
    with run_in_thread(sim()) as base_url, recording_server() as elsewhere:
        queue_url = make_resources(aws)
        connection = Conn(host=base_url, password="s3cret")
        plan = plan_source_job(spec, "manual__older", None, SETTINGS, connection, None)
        requests = [request.to_dict() for request in batch_requests(plan["base_request"], plan["batches"][0])]
        requests[1]["url"] = f"{elsewhere.base_url}/offset/items"
        plan["batches"] = [requests]
        plan["concurrency_shares"], plan["rate_shares"] = [2], [None]
        fetches, statuses = fetch_all(aws, spec, plan, connection, queue_url, "manual__older")
        assert elsewhere.requests == []

    assert statuses["page-000002"]["state"] == "FailedToComplete"
    assert "refused to send a request to " + elsewhere.base_url in statuses["page-000002"]["reason"]
    assert fetches[0]["saved"] == 9


@pytest.mark.parametrize("kind", ["page_number_pages", "cursor", "next_url_link_header"])
def test_faults_and_429s_are_retried_and_every_record_still_lands_once(aws, kind: str) -> None:
    faults = sim(error_rate=0.2, rate_limit_rate=0.4, retry_after="0", truncate_rate=0.1, seed=7)
    settings = replace(SETTINGS, http_attempts=12)
    with run_in_thread(faults) as base_url:
        outcome = run_source_job(
            aws, source(kind, requests_per_second=500), Conn(host=base_url), settings=settings
        )
        served = stats(base_url)

    assert sorted(record["id"] for record in outcome.records) == list(range(TOTAL))
    assert served["faults_injected"]["rate_limit"] > 0
    assert all(fetch["complete"] or fetch["mode"] == "planned" for fetch in outcome.fetches)


def test_a_retried_walk_walks_again_without_saving_or_announcing_processed_pages(aws) -> None:
    spec = source("cursor")
    job = "manual__walk_retry"
    with run_in_thread(sim()) as base_url:
        first = run_source_job(aws, spec, Conn(host=base_url), job_id=job)
        queue_url = make_resources(aws)
        fetches, statuses = fetch_all(aws, spec, first.plan, Conn(host=base_url), queue_url, job)
        again, _ = process_all(aws, queue_url)

    assert len(first.records) == TOTAL
    (walk,) = fetches
    assert walk["resumed"] == walk["pages"] and walk["saved"] == 0 and walk["complete"]
    assert again == []  # nothing was enqueued a second time
    assert all(status["state"] == "SuccessfullyCompleted" for status in statuses.values())
