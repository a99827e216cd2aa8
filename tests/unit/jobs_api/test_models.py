"""The job API's request body comes from the one job-request definition; page details are pure."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from api_poller.core.job_request import CONCURRENCY, FETCH_TASKS, MAX_URL_LENGTH, PAGE_SIZE, URL
from api_poller.core.lifecycle import merge_page_statuses
from api_poller.jobs_api.models import JobRequestBody
from api_poller.jobs_api.page_details import page_details, planned_pages


def test_a_job_request_becomes_the_runs_conf_without_unset_fields():
    request = JobRequestBody.model_validate({"url": " https://partner.example/payload ", "concurrency": 8})
    assert request.conf() == {"url": "https://partner.example/payload", "concurrency": 8}


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({}, "url", "Field required"),
        ({"url": "ftp://x"}, "url", "url 'ftp://x' must use http or https"),
        ({"url": 42}, "url", "url must be a string, got int"),
        ({"url": "https://x/" + "a" * MAX_URL_LENGTH}, "url", f"above the limit of {MAX_URL_LENGTH}"),
        ({"url": "https://x/\x00"}, "url", "must not contain control characters"),
        (
            {"url": "https://x", "fetch_tasks": True},
            "fetch_tasks",
            "fetch_tasks must be an integer, got True",
        ),
        (
            {"url": "https://x", "concurrency": "25"},
            "concurrency",
            "concurrency must be an integer, got '25'",
        ),
        ({"url": "https://x", "page_size": 0}, "page_size", "page_size must be between 1 and 1000000, got 0"),
        ({"url": "https://x", "pages": 3}, "pages", "Extra inputs are not permitted"),
    ],
)
def test_a_bad_request_names_the_field_with_the_plan_steps_message(body, field, message):
    with pytest.raises(ValidationError) as raised:
        JobRequestBody.model_validate(body)
    [error] = raised.value.errors()
    assert error["loc"] == (field,)
    assert message in error["msg"]


def test_the_request_schema_carries_the_definitions_titles_and_limits():
    schema = JobRequestBody.model_json_schema()["properties"]
    assert schema["url"]["maxLength"] == URL.max_length and schema["url"]["title"] == URL.title
    for spec in (PAGE_SIZE, CONCURRENCY, FETCH_TASKS):
        [number, _] = schema[spec.name]["anyOf"]
        assert (number["minimum"], number["maximum"]) == (spec.minimum, spec.maximum)
        assert schema[spec.name]["title"] == spec.title


def test_pages_are_listed_before_any_task_touched_them():
    plan = [
        {"batch": [{"page": 0, "start_at": 0, "count": 10}], "url": "u", "concurrency_per_task": 1},
        {"batch": [{"page": 1, "start_at": 10, "count": 5}], "url": "u", "concurrency_per_task": 1},
    ]
    statuses = {"page-000001": {"state": "FailedToComplete", "at": 0, "attempts": 6, "reason": "HTTP 500"}}
    pages = page_details("manual__x", planned_pages(plan), statuses, "raw", "done")
    assert [(p.PageId, p.State, p.FetchMapIndex, p.Count) for p in pages] == [
        ("page-000000", "Pending", 0, 10),
        ("page-000001", "FailedToComplete", 1, 5),
    ]
    assert (
        pages[1].Reason == "HTTP 500" and pages[1].ProcessedLocation is None and pages[1].RawLocation is None
    )


def test_a_pages_details_come_from_every_task_that_touched_it():
    fetched = {"page-000000": {"state": "PayloadSaved", "at": 1.0, "attempts": 3, "error": "HTTP 500",
                               "raw_key": "jobs/j/raw/page-000000.json"}}  # fmt: skip
    enqueued = {"page-000000": {"state": "Enqueued", "at": 2.0, "message_id": "m"}}
    processed = {"page-000000": {"state": "SuccessfullyCompleted", "at": 3.0, "receives": 1, "records": 10,
                                 "processed_key": "jobs/j/records/page-000000.ndjson"}}  # fmt: skip
    records = merge_page_statuses([processed, None, fetched, enqueued])
    [page] = page_details("j", {}, records, "raw", "done")
    assert (page.State, page.Attempts, page.Error, page.Records, page.Receives) == (
        "SuccessfullyCompleted",
        3,
        "HTTP 500",
        10,
        1,
    )
    assert page.RawLocation == "s3://raw/jobs/j/raw/page-000000.json"
    assert page.ProcessedLocation == "s3://done/jobs/j/records/page-000000.ndjson"


def test_a_plan_that_is_not_a_list_has_no_pages():
    assert planned_pages(None) == {} and planned_pages({"batch": []}) == {}
