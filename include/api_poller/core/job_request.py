"""A job request: what a run asks for (URL, page size, concurrency, fetch tasks), defined once.

Each field's type, limits, default (from ``PollerSettings``), title, description and error
messages are written here; from them come

* the DAG's Params form (:func:`dag_params`, Airflow validates a run's conf against it),
* the job API's request body (``api_poller.jobs_api.models.JobRequestBody``), and
* plan-time validation (:func:`parse_job_request`, raising ``InvalidJobRequest`` naming the field).

The URL checks here are the pure ones (scheme, host, no credentials, length); whether its host may
be fetched at all is the SSRF guard's question (``api_poller.partner.url_policy``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from api_poller.core.errors import InvalidJobRequest
from api_poller.settings import PollerSettings

if TYPE_CHECKING:
    from airflow.sdk import Param

ALLOWED_SCHEMES = ("http", "https")
# Browsers, proxies and servers commonly refuse longer URLs; a longer one is a mistake or an attack.
MAX_URL_LENGTH = 2048
MAX_PAGE_SIZE = 1_000_000
MAX_CONCURRENCY = 512
MAX_FETCH_TASKS = 256


@dataclass(frozen=True)
class UrlField:
    name: str
    title: str
    description: str
    max_length: int

    def default(self, settings: PollerSettings) -> str | None:
        return settings.default_url or None

    def check(self, value: Any) -> str:
        """The URL, stripped, or InvalidJobRequest saying what is wrong with it."""
        if value is None or value == "":
            raise InvalidJobRequest(
                f'{self.name} is missing: trigger the job with conf {{"url": "https://.../payload"}}'
            )
        if not isinstance(value, str):
            raise InvalidJobRequest(f"{self.name} must be a string, got {type(value).__name__}")
        url = value.strip()
        if len(url) > self.max_length:
            # Not echoed: the value is the problem.
            raise InvalidJobRequest(
                f"{self.name} is {len(url)} characters long, above the limit of {self.max_length}"
            )
        if any(ord(char) < 0x20 or ord(char) == 0x7F for char in url):
            raise InvalidJobRequest(f"{self.name} must not contain control characters")
        parts = urlsplit(url)
        if parts.scheme not in ALLOWED_SCHEMES:
            raise InvalidJobRequest(
                f"{self.name} {url!r} must use http or https, not {parts.scheme or 'no scheme'!r}"
            )
        try:
            host, _ = parts.hostname, parts.port  # a port out of range raises here
        except ValueError as exc:
            raise InvalidJobRequest(f"{self.name} {url!r} is malformed: {exc}") from None
        if not host:
            raise InvalidJobRequest(f"{self.name} {url!r} has no host")
        if parts.username or parts.password:
            # Credentials in the URL would end up in XCom and logs; they belong in a Connection.
            raise InvalidJobRequest(
                f"{self.name} must not contain credentials: use API_POLLER_PARTNER_API_CONN_ID"
            )
        return url


@dataclass(frozen=True)
class IntField:
    name: str
    title: str
    description: str
    maximum: int
    # Empty (null) means "use the default"; a field whose default is never empty is not nullable.
    default_from: Callable[[PollerSettings], int | None]
    nullable: bool = True
    minimum: int = 1

    def default(self, settings: PollerSettings) -> int | None:
        return self.default_from(settings)

    def check(self, value: Any) -> int | None:
        """The integer (None when empty), or InvalidJobRequest naming the field."""
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidJobRequest(f"{self.name} must be an integer, got {value!r}")
        if not self.minimum <= value <= self.maximum:
            raise InvalidJobRequest(
                f"{self.name} must be between {self.minimum} and {self.maximum}, got {value}"
            )
        return value


URL = UrlField(
    name="url",
    title="Partner API URL",
    description="The paged endpoint (http or https), e.g. https://partner.example/payload "
    "(startAt/count are added).",
    max_length=MAX_URL_LENGTH,
)
PAGE_SIZE = IntField(
    name="page_size",
    title="Page size",
    description="Records per request; empty uses the API's maxRecordsPerPage (it cannot exceed it).",
    maximum=MAX_PAGE_SIZE,
    default_from=lambda settings: None,
)
CONCURRENCY = IntField(
    name="concurrency",
    title="Concurrency",
    description="Requests in flight to the partner API for this job, across all fetch tasks.",
    maximum=MAX_CONCURRENCY,
    default_from=lambda settings: settings.default_concurrency,
    nullable=False,
)
FETCH_TASKS = IntField(
    name="fetch_tasks",
    title="Fetch tasks",
    description="How many mapped fetch tasks share the pages (never more than the concurrency). "
    "Empty: chosen from the page count, about 1,000 pages per task.",
    maximum=MAX_FETCH_TASKS,
    default_from=lambda settings: settings.default_fetch_tasks or None,
)
INT_FIELDS = (PAGE_SIZE, CONCURRENCY, FETCH_TASKS)
FIELD_NAMES = (URL.name, *(field.name for field in INT_FIELDS))


def validate_job_url(url: Any) -> str:
    """The job's partner API URL, or InvalidJobRequest saying what is wrong with it."""
    return URL.check(url)


@dataclass(frozen=True)
class JobRequest:
    url: str
    page_size: int | None
    concurrency: int
    # None: chosen from the page count (see planning.choose_fetch_tasks).
    fetch_tasks: int | None


def parse_job_request(params: Mapping[str, Any], settings: PollerSettings) -> JobRequest:
    """The job's request from the run's Params/conf, with a message naming any bad field."""
    values: dict[str, Any] = {}
    for field in INT_FIELDS:
        value = field.check(params.get(field.name))
        values[field.name] = field.default(settings) if value is None else value
    return JobRequest(url=URL.check(params.get(URL.name) or URL.default(settings)), **values)


def dag_params(settings: PollerSettings) -> dict[str, Param]:
    """The DAG's Params: the trigger form, and the schema Airflow checks a run's conf against."""
    from airflow.sdk import Param

    params = {
        URL.name: Param(
            URL.default(settings),
            type=["null", "string"],
            maxLength=URL.max_length,
            title=URL.title,
            description=f"{URL.description} Empty uses API_POLLER_DEFAULT_URL.",
        )
    }
    for field in INT_FIELDS:
        params[field.name] = Param(
            field.default(settings),
            type=["null", "integer"] if field.nullable else "integer",
            minimum=field.minimum,
            maximum=field.maximum,
            title=field.title,
            description=field.description,
        )
    return params
