"""The job request built from a run's Params: defaults, the scheduled run's URL, clear errors."""

from __future__ import annotations

import pytest

from api_poller.core.errors import InvalidJobRequest
from api_poller.core.job_request import parse_job_request
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
