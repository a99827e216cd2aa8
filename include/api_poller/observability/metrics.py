"""The poller's metrics, sent through Airflow's own Stats (StatsD, Datadog or OpenTelemetry: whichever
backend Airflow is configured with; nothing is sent when metrics are off).

Names (all counters unless said otherwise; see docs/alerts-and-metrics.md), each tagged with the
job's ``source`` (the seed DAG's jobs: ``api_poller``):

* ``api_poller.pages.fetched``: a page fetched from the API and saved raw;
  ``api_poller.bytes.fetched``: its bytes as served.
* ``api_poller.pages.failed``: a page given up on (FailedToComplete), by the fetch or the consumer.
* ``api_poller.http.retries.<status>``: a request retried, by the HTTP status that caused it
  (``transport`` for timeouts, connection errors and bodies that are not JSON);
  ``api_poller.http.throttled``: a 429 answer (retried or not).
* ``api_poller.pages.processed``, ``api_poller.records.written``, ``api_poller.bytes.written``: a
  page's records written to the processed bucket (repeat deliveries are not counted again).
* ``api_poller.jobs.<outcome>`` (complete, incomplete, failed) and the timer
  ``api_poller.job.duration`` (tagged with the ``outcome`` too): once per job, at its end.

The status is in the name (not only a tag) so that plain StatsD, which drops tags, still tells
retries apart; the source is a tag (StatsD keeps it with ``[metrics] statsd_influxdb_enabled``).
Sending is a UDP datagram per call (a few microseconds), so counters go out once per page where the
fact is known. A metric never fails a task: without Airflow (a unit test) nothing is sent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import Any, Protocol

log = logging.getLogger(__name__)

PREFIX = "api_poller"
PAGES_FETCHED = f"{PREFIX}.pages.fetched"
BYTES_FETCHED = f"{PREFIX}.bytes.fetched"
PAGES_FAILED = f"{PREFIX}.pages.failed"
RETRIES = f"{PREFIX}.http.retries"  # .<status>
THROTTLED = f"{PREFIX}.http.throttled"
PAGES_PROCESSED = f"{PREFIX}.pages.processed"
RECORDS_WRITTEN = f"{PREFIX}.records.written"
BYTES_WRITTEN = f"{PREFIX}.bytes.written"
JOBS = f"{PREFIX}.jobs"  # .<outcome>
JOB_DURATION = f"{PREFIX}.job.duration"
TRANSPORT = "transport"  # a retry without an HTTP status


class _Stats(Protocol):
    def incr(self, stat: str, count: int | None = None, *, tags: dict[str, Any] | None = None) -> None: ...

    def timing(self, stat: str, dt: timedelta, *, tags: dict[str, Any] | None = None) -> None: ...


class _Dropped:
    """Where metrics go without Airflow."""

    def incr(self, stat: str, count: int | None = None, *, tags: dict[str, Any] | None = None) -> None:
        return None

    def timing(self, stat: str, dt: timedelta, *, tags: dict[str, Any] | None = None) -> None:
        return None


@cache
def _stats() -> _Stats:
    try:
        from airflow.sdk.observability import stats
    except ImportError:
        return _Dropped()
    return stats  # a module with the functions _Stats names


def http_status_of(error: BaseException) -> int | None:
    """The HTTP status behind an error, or behind the one it wraps ("gave up after N attempts")."""
    for candidate in (error, error.__cause__):
        status = getattr(candidate, "status", None)
        if isinstance(status, int):
            return status
    return None


@dataclass(frozen=True)
class JobMetrics:
    """The metrics of one source's jobs (``source`` is the tag they carry)."""

    source: str

    @property
    def _tags(self) -> dict[str, str]:
        return {"source": self.source}

    def _incr(self, stat: str, count: int = 1, **extra_tags: str) -> None:
        try:
            _stats().incr(stat, count, tags={**self._tags, **extra_tags})
        except Exception:  # a metric must never fail the work it describes
            log.debug("could not send %s", stat, exc_info=True)

    def page_fetched(self, body_bytes: int) -> None:
        self._incr(PAGES_FETCHED)
        self._incr(BYTES_FETCHED, body_bytes)

    def page_failed(self) -> None:
        self._incr(PAGES_FAILED)

    def request_failed(self, error: BaseException, *, retried: bool) -> None:
        """An attempt that failed: a retry (by status) if ``retried``; a 429 either way."""
        status = http_status_of(error)
        if retried:
            self._incr(f"{RETRIES}.{status if status is not None else TRANSPORT}")
        if status == 429:
            self._incr(THROTTLED)

    def page_processed(self, records: int, body_bytes: int) -> None:
        self._incr(PAGES_PROCESSED)
        self._incr(RECORDS_WRITTEN, records)
        self._incr(BYTES_WRITTEN, body_bytes)

    def job_finished(self, outcome: str, seconds: float) -> None:
        self._incr(f"{JOBS}.{outcome}")
        try:
            _stats().timing(JOB_DURATION, timedelta(seconds=seconds), tags={**self._tags, "outcome": outcome})
        except Exception:
            log.debug("could not send %s", JOB_DURATION, exc_info=True)
