"""The job request built from a run's Params: defaults, the scheduled run's URL, clear errors."""

from __future__ import annotations

import pytest

from api_poller.core.errors import InvalidJobRequest
from api_poller.core.job_request import FIELD_NAMES, INT_FIELDS, MAX_URL_LENGTH, dag_params, parse_job_request
from api_poller.settings import PollerSettings

SETTINGS = PollerSettings(default_concurrency=25, default_fetch_tasks=4)


def test_defaults_come_from_settings():
    request = parse_job_request({"url": "https://partner.example/payload"}, SETTINGS)
    assert (request.page_size, request.concurrency, request.fetch_tasks) == (None, 25, 4)


def test_a_scheduled_run_without_url_uses_the_default_url():
    settings = PollerSettings(default_url="https://partner.example/payload")
    assert parse_job_request({"url": None}, settings).url == "https://partner.example/payload"


def test_the_run_url_wins_over_the_default_url():
    settings = PollerSettings(default_url="https://default.example/payload")
    request = parse_job_request({"url": "https://other.example/payload"}, settings)
    assert request.url == "https://other.example/payload"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "url is missing"),
        ({"url": 42}, "url must be a string"),
        ({"url": "https://p.example/x", "page_size": 0}, "page_size must be between 1"),
        ({"url": "https://p.example/x", "page_size": "10"}, "page_size must be an integer"),
        ({"url": "https://p.example/x", "concurrency": 10_000}, "concurrency must be between 1 and 512"),
        ({"url": "https://p.example/x", "fetch_tasks": True}, "fetch_tasks must be an integer"),
        ({"url": "https://p.example/x", "fetch_tasks": -1}, "fetch_tasks must be between 1"),
    ],
)
def test_bad_params_are_refused_naming_the_field(params, message):
    with pytest.raises(InvalidJobRequest, match=message):
        parse_job_request(params, SETTINGS)


def test_a_url_above_the_length_limit_is_refused_without_echoing_it():
    url = "https://p.example/" + "a" * MAX_URL_LENGTH
    message = f"url is {len(url)} characters long, above the limit of 2048"
    with pytest.raises(InvalidJobRequest, match=message) as raised:
        parse_job_request({"url": url}, SETTINGS)
    assert "aaaa" not in str(raised.value)


@pytest.mark.parametrize(
    "url", ["https://p.example/\x00", "https://p.example/a\nb", "https://p.example:99999/"]
)
def test_a_url_with_control_characters_or_a_bad_port_is_refused(url):
    with pytest.raises(InvalidJobRequest, match="url"):
        parse_job_request({"url": url}, SETTINGS)


def test_the_dag_params_carry_the_definitions_limits_and_defaults():
    params = dag_params(SETTINGS)
    assert set(params) == set(FIELD_NAMES)
    assert params["url"].schema["maxLength"] == MAX_URL_LENGTH
    assert params["concurrency"].value == 25 and params["concurrency"].schema["type"] == "integer"
    assert params["fetch_tasks"].value == 4
    for field in INT_FIELDS:
        schema = params[field.name].schema
        limits = (schema["minimum"], schema["maximum"], schema["title"])
        assert limits == (field.minimum, field.maximum, field.title)


@pytest.mark.parametrize(
    "conf",
    [{"url": "https://p.example/" + "a" * MAX_URL_LENGTH}, {"url": "https://p.example/x", "page_size": 0}],
    ids=["url-too-long", "page-size-zero"],
)
def test_what_plan_time_validation_refuses_the_params_refuse_when_triggering(conf):
    from airflow.sdk.definitions.param import ParamsDict
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(InvalidJobRequest):
        parse_job_request(conf, SETTINGS)
    params = ParamsDict(dag_params(SETTINGS))
    with pytest.raises(ParamValidationError, match=f"Invalid input for param {list(conf)[-1]}"):
        params.update(conf)  # each value is checked against its Param's schema as it is set
