"""The poller's metrics: names, counts and tags as sent to Airflow's Stats."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from api_poller.core.errors import RetriableError, error_for_status
from api_poller.observability import metrics
from api_poller.observability.metrics import JobMetrics


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, dict[str, Any]]] = []

    def incr(self, stat: str, count: int | None = None, *, tags: dict[str, Any] | None = None) -> None:
        self.sent.append((stat, count, tags or {}))

    def timing(self, stat: str, dt: timedelta, *, tags: dict[str, Any] | None = None) -> None:
        self.sent.append((stat, dt, tags or {}))


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any, dict[str, Any]]]:
    recorder = Recorder()
    monkeypatch.setattr(metrics, "_stats", lambda: recorder)
    return recorder.sent


def test_a_retry_is_counted_by_the_http_status_that_caused_it(sent) -> None:
    orders = JobMetrics("orders")
    orders.request_failed(error_for_status(503, "https://api.example/items"), retried=True)
    orders.request_failed(RetriableError("timed out waiting for https://api.example/items"), retried=True)
    assert [(stat, tags) for stat, _, tags in sent] == [
        ("api_poller.http.retries.503", {"source": "orders"}),
        ("api_poller.http.retries.transport", {"source": "orders"}),
    ]


def test_a_429_is_counted_as_throttled_even_when_it_was_the_last_attempt(sent) -> None:
    last = error_for_status(429, "https://api.example/items")
    try:
        raise RetriableError("gave up after 6 attempts") from last
    except RetriableError as gave_up:
        JobMetrics("orders").request_failed(gave_up, retried=False)
    assert [stat for stat, _, _ in sent] == ["api_poller.http.throttled"]


def test_pages_records_bytes_and_the_job_duration_carry_the_source(sent) -> None:
    orders = JobMetrics("orders")
    orders.page_fetched(2048)
    orders.page_processed(records=100, body_bytes=1900)
    orders.job_finished("incomplete", 12.5)
    assert sent == [
        ("api_poller.pages.fetched", 1, {"source": "orders"}),
        ("api_poller.bytes.fetched", 2048, {"source": "orders"}),
        ("api_poller.pages.processed", 1, {"source": "orders"}),
        ("api_poller.records.written", 100, {"source": "orders"}),
        ("api_poller.bytes.written", 1900, {"source": "orders"}),
        ("api_poller.jobs.incomplete", 1, {"source": "orders"}),
        ("api_poller.job.duration", timedelta(seconds=12.5), {"source": "orders", "outcome": "incomplete"}),
    ]


def test_a_metric_that_cannot_be_sent_never_fails_the_work(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        def incr(self, *args: Any, **kwargs: Any) -> None:
            raise OSError("no route to the metrics host")

        timing = incr

    monkeypatch.setattr(metrics, "_stats", lambda: Broken())
    JobMetrics("orders").page_fetched(10)
    JobMetrics("orders").job_finished("complete", 1.0)
