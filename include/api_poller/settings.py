"""Deployment settings: every name and knob the DAG uses, read from ``API_POLLER_*`` variables.

Settings describe *where* things live (connections, buckets, queues) and *how hard* to try
(retries, timeouts). Per-job choices (URL, page size, concurrency) are DAG Params instead.
Defaults are the local embedded stack; pointing at real AWS changes only these variables.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields

ENV_PREFIX = "API_POLLER_"


@dataclass(frozen=True)
class PollerSettings:
    aws_conn_id: str = "aws_default"
    raw_bucket: str = "api-poller-raw"
    processed_bucket: str = "api-poller-processed"
    queue_name: str = "api-poller-process-payload"
    dead_letter_queue_name: str = "api-poller-process-payload-dlq"
    # SQS moves a message to the DLQ after this many failed receives (the seed uses 3).
    max_receive_count: int = 3
    # Create buckets and queues if missing (local default); off on AWS, where IaC owns them.
    create_resources: bool = True
    # The partner API: an optional HTTP connection holding its credentials (basic auth from
    # login/password, a bearer token from the password alone, or extra {"headers": {...}}),
    # and the SSRF guard's allowlist (see url_policy.py).
    partner_api_conn_id: str = ""
    url_allowlist: str = ""
    max_response_bytes: int = 64 * 1024 * 1024
    # Bytes of pages a task holds in memory at once (its fetch requests, or its processing
    # workers, together): a page that does not fit waits, unread, for room; one larger than this
    # is held alone. A task's memory grows with this, not with page size or concurrency.
    page_bytes_in_flight: int = 32 * 1024 * 1024
    # Where the source files live (one YAML file per source, each its own DAG); empty: the
    # ``sources`` folder next to the DAG files (dags/sources/), which Amazon MWAA syncs too.
    sources_folder: str = ""
    # Scheduled full sync: a cron/preset string, or empty for manual runs only.
    schedule: str = ""
    default_url: str = ""
    # Job defaults (each can be overridden per run through the DAG's Params).
    default_concurrency: int = 25
    # 0: chosen per job from its page count (about 1,000 pages per task, at most 16 tasks).
    default_fetch_tasks: int = 0
    # An Airflow pool for the fetch tasks (empty: default_pool), to cap them across jobs.
    fetch_pool: str = ""
    # HTTP retries per page, as the seed's state machine: 6 attempts, backoff rate 2.
    http_attempts: int = 6
    retry_initial_seconds: float = 1.0
    retry_backoff_rate: float = 2.0
    retry_max_seconds: float = 60.0
    http_timeout_seconds: float = 30.0
    # A 429/503 Retry-After is honoured, up to this many seconds.
    retry_after_max_seconds: float = 300.0
    # Processing: how long the process step may wait for the job's pages, and how soon a
    # failed message is offered again (instead of waiting out the queue's visibility timeout).
    process_timeout_seconds: float = 3600.0
    process_retry_delay_seconds: int = 5
    process_poke_seconds: float = 1.0
    # Pages one process step works on at once (threads).
    process_workers: int = 16
    # For runners that run one task at a time (dag.test, scripts/local-sync): the process step
    # gives way (reschedules) after this many idle seconds while no fetch task runs. 0: never,
    # the right value on a scheduler (see PageMessageSensor's yield_when_idle_seconds).
    process_yield_seconds: float = 0.0
    # How often a running task publishes its pages' status to XCom.
    status_flush_seconds: float = 1.0
    # What the report step does when pages failed: "fail" the run or only "warn".
    on_incomplete: str = "fail"
    # After processing, check each page's record count against the plan from the page statuses
    # ("counts"), or also read the whole output back to look for duplicate ids ("full": costs a
    # GET of every processed page).
    reconcile: str = "counts"
    # Retention (the api_poller_maintenance DAG): a job's status (its XComs) and its leftover raw
    # pages are removed this many days after the job ended.
    retention_days: int = 3
    # Dead letters this close to the DLQ's MessageRetentionPeriod are reported before SQS drops them.
    dead_letter_expiry_margin_days: float = 2.0
    # Airflow 3 tasks have no metadata-database access: the status purge runs in a process given
    # the database URL held by this Airflow connection (see docs/operations.md).
    metadata_db_conn_id: str = ""
    # On Amazon MWAA: the environment whose CLI endpoint runs the status purge instead.
    mwaa_environment: str = ""

    def __post_init__(self) -> None:
        if self.on_incomplete not in ("fail", "warn"):
            raise ValueError(
                f"{ENV_PREFIX}ON_INCOMPLETE must be 'fail' or 'warn', got {self.on_incomplete!r}"
            )
        if self.reconcile not in ("full", "counts"):
            raise ValueError(f"{ENV_PREFIX}RECONCILE must be 'full' or 'counts', got {self.reconcile!r}")
        if self.page_bytes_in_flight < 1:
            raise ValueError(
                f"{ENV_PREFIX}PAGE_BYTES_IN_FLIGHT must be >= 1, got {self.page_bytes_in_flight}"
            )
        if self.http_attempts < 1:
            raise ValueError(f"{ENV_PREFIX}HTTP_ATTEMPTS must be >= 1, got {self.http_attempts}")
        if self.process_yield_seconds < 0:
            raise ValueError(
                f"{ENV_PREFIX}PROCESS_YIELD_SECONDS must be >= 0 (0: never), got {self.process_yield_seconds}"
            )


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


SettingValue = str | int | float | bool
# How a variable's text becomes a field's value, by the type of the field's default.
_PARSERS: dict[type, Callable[[str], SettingValue]] = {str: str, int: int, float: float, bool: _parse_bool}


def load_settings(environ: Mapping[str, str] | None = None) -> PollerSettings:
    """Build settings from ``API_POLLER_<FIELD>`` variables; unset ones keep their defaults."""
    environ = os.environ if environ is None else environ
    values: dict[str, SettingValue] = {}
    for field in fields(PollerSettings):
        raw = environ.get(ENV_PREFIX + field.name.upper())
        if raw is None:
            continue
        kind = type(field.default)
        try:
            values[field.name] = _PARSERS[kind](raw)
        except ValueError:
            raise ValueError(
                f"{ENV_PREFIX}{field.name.upper()}={raw!r} is not a valid {kind.__name__}"
            ) from None
    # Each value was parsed for its own field just above; mypy checks **values against every field.
    return PollerSettings(**values)  # type: ignore[arg-type]
