"""The job API's request and answer documents (pydantic; no Airflow needed).

``POST /jobs`` takes one of two bodies: ``{"url": ...}`` starts a run of the free-URL
``api_poller`` DAG (:data:`JobRequestBody`), ``{"source": "<name>", ...}`` a run of that source's
DAG ``api_poller__<name>`` (:data:`SourceJobRequestBody`). Both are derived from the one
job-request definition (``api_poller.core.job_request``): the same fields, limits, titles,
descriptions and error messages as the DAGs' Params and the plan steps' validation.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    create_model,
    model_validator,
)

from api_poller.core.errors import InvalidJobRequest
from api_poller.core.job_request import CONCURRENCY, FETCH_TASKS, INT_FIELDS, URL, IntField
from api_poller.sources.spec import NAME_PATTERN

SOURCE_FIELD = "source"  # the key that makes a request body a source job's

PENDING = "Pending"  # a planned page no task has touched yet


def _checked_by(check: Callable[[Any], Any]) -> BeforeValidator:
    """Run the core check first, so the API answers with its message (pydantic puts the field
    name in the error's ``loc``)."""

    def validate(value: Any) -> Any:
        try:
            return check(value)
        except InvalidJobRequest as exc:
            raise ValueError(str(exc)) from None

    return BeforeValidator(validate)


class JobRequestBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def conf(self) -> dict[str, Any]:
        """The DAG run conf: only what was given, so the DAG's Param defaults apply to the rest."""
        return self.model_dump(exclude_none=True)


def _int_fields(specs: tuple[IntField, ...]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for spec in specs:
        number = Annotated[int, Field(ge=spec.minimum, le=spec.maximum)]
        fields[spec.name] = (
            Annotated[number | None, _checked_by(spec.check)],
            Field(
                default=None, title=spec.title, description=f"{spec.description} Omitted: the DAG's default."
            ),
        )
    return fields


def _request_fields() -> dict[str, Any]:
    url = (
        Annotated[str, Field(max_length=URL.max_length), _checked_by(URL.check)],
        Field(title=URL.title, description=URL.description),
    )
    return {URL.name: url, **_int_fields(INT_FIELDS)}


# The body of ``POST /jobs`` for the free-URL api_poller DAG.
JobRequestBody: type[JobRequestBase] = create_model(
    "JobRequestBody", __base__=JobRequestBase, **_request_fields()
)


def _query_value(value: Any) -> Any:
    """A value a trigger may give an overridable query parameter (None: the source's own value)."""
    if value is None or isinstance(value, str | int | float):  # bool is an int
        return value
    raise ValueError(f"a query parameter's value must be a string, a number or a boolean, got {value!r}")


QueryValue = Annotated[StrictStr | int | float | StrictBool | None, BeforeValidator(_query_value)]


class SourceRequestBase(JobRequestBase):
    source: Annotated[str, Field(pattern=f"^{NAME_PATTERN.pattern}$", max_length=63)] = Field(
        title="Source", description="The source's name (its file's `name`): runs the DAG api_poller__<name>."
    )
    params: dict[Annotated[str, Field(max_length=128)], QueryValue] | None = Field(
        default=None,
        title="Query parameters",
        description="Values of the query parameters the source lets a trigger override "
        "(its overridable_params); never the host.",
    )
    full_refresh: StrictBool | None = Field(
        default=None,
        title="Full refresh",
        description="Ignore the incremental watermark and sync every record. Omitted: false.",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_url(cls, data: Any) -> Any:
        if isinstance(data, dict) and URL.name in data:
            raise ValueError(
                f"a source job takes no {URL.name!r}: its URL comes from its file (path) and its "
                "Connection (scheme, host, port) only"
            )
        return data

    def conf(self) -> dict[str, Any]:
        conf = self.model_dump(exclude_none=True, exclude={SOURCE_FIELD})
        if self.params is not None:  # a None value keeps the source's own value: sent as given
            conf["params"] = dict(self.params)
        return conf


# The body of ``POST /jobs`` for a source's DAG.
SourceJobRequestBody: type[SourceRequestBase] = create_model(
    "SourceJobRequestBody", __base__=SourceRequestBase, **_int_fields((CONCURRENCY, FETCH_TASKS))
)


class JobEntry(BaseModel):
    EventId: str


class JobStarted(BaseModel):
    """``POST /jobs`` answer; ``Entries[0].EventId`` keeps the AWS sample's jq lines working."""

    jobId: str
    Entries: list[JobEntry]
    FailedEntryCount: int = 0
    State: str
    ReplayOf: str | None = None


class JobProgress(BaseModel):
    """The seed's progress document (top-level keys) plus the run's identity and state."""

    Started: int
    PayloadSaved: int
    Enqueued: int
    SuccessfullyCompleted: int
    FailedToComplete: int
    Total: int
    TotalKnown: bool | None = Field(
        default=None,
        description="Only for a walked source job (a cursor or a next link): false while the walk goes "
        "on (Total is the pages found so far, more may come), true once it has ended. Absent: the "
        "total was known from the plan.",
    )
    JobId: str
    DagId: str = Field(description="The DAG the job is a run of: api_poller or api_poller__<source>.")
    Source: str | None = Field(
        description="The source's name for a source job (DAG api_poller__<source>); null for a job of "
        "the free-URL api_poller DAG."
    )
    State: str | None
    Conf: dict[str, Any]
    TriggeredBy: str | None
    QueuedAt: datetime | None
    StartDate: datetime | None
    EndDate: datetime | None
    RunPath: str = Field(description="The DAG run in the Airflow UI, relative to Airflow's base URL.")
    Expired: str | None = Field(
        default=None, description="Why the counts are gone: the job's status was purged (retention)."
    )


class FailedReason(BaseModel):
    Reason: str
    Pages: int = Field(description="How many pages failed for this reason.")
    Sample: list[str] = Field(description="Up to 5 of those pages' ids, in page order.")


class JobActions(BaseModel):
    """What the requesting user may do with the job, as Airflow's auth manager answers for its DAG
    (whether the job's state allows it now is the action route's answer)."""

    Replay: bool = Field(description="May start a new job with this conf (create runs of the DAG).")
    Redrive: bool = Field(description="May redrive the job's dead letters (create runs of the DAG).")
    RerunFailed: bool = Field(description="May rerun the failed pages (clear the DAG's task instances).")


class JobDetail(JobProgress):
    """``GET /jobs/{id}``: the progress, why the job failed, in words, and what the user may do."""

    Error: str | None = Field(
        default=None, description="Why the plan step failed (bad URL, refused host, bad metadata...)."
    )
    FailedReasons: list[FailedReason] = Field(
        default_factory=list, description="The FailedToComplete pages grouped by reason, most pages first."
    )
    Actions: JobActions = Field(description="The actions the requesting user may take on the job.")


class JobList(BaseModel):
    Jobs: list[JobProgress]


class PageDetail(BaseModel):
    PageId: str
    StartAt: int | None
    Count: int | None
    FetchMapIndex: int | None = Field(description="The fetch_pages map index that fetches this page.")
    State: str = Field(description=f"A lifecycle state, or {PENDING!r} before any task touched the page.")
    UpdatedAt: datetime | None
    Attempts: int | None
    Receives: int | None
    Records: int | None
    RawLocation: str | None = Field(description="Where the raw payload was saved (deleted once processed).")
    ProcessedLocation: str | None
    Error: str | None = Field(description="The last transient error (retried).")
    Reason: str | None = Field(description="Why the page is FailedToComplete.")


class JobPages(BaseModel):
    JobId: str
    State: str | None
    Total: int = Field(description="Every page of the job (planned or recorded).")
    Matching: int = Field(description="The pages in the asked state (all of them without ?state=).")
    Offset: int
    Limit: int
    Pages: list[PageDetail] = Field(description="The matching pages from Offset (at most Limit), in order.")


class TimelineBucket(BaseModel):
    At: datetime = Field(description="The bucket's start.")
    Completed: int = Field(description="Pages that reached SuccessfullyCompleted in the bucket.")
    Failed: int = Field(description="Pages that reached FailedToComplete in the bucket.")
    Retries: int = Field(
        description="Fetch attempts and SQS receives beyond the first, of the pages last recorded in "
        "the bucket."
    )


class JobTimeline(BaseModel):
    """``GET /jobs/{id}/timeline``: the job's throughput over time, for a chart."""

    JobId: str
    State: str | None
    Start: datetime | None = Field(description="The first bucket's start; null before any record.")
    BucketSeconds: int | None = Field(description="Each bucket's width: about 60 buckets span the job.")
    Buckets: list[TimelineBucket]


class JobRedriven(BaseModel):
    """``POST /jobs/{id}/redrive`` answer."""

    JobId: str
    Moved: list[str] = Field(description="Pages whose dead letter went back to the processing queue.")
    Failed: dict[str, str] = Field(
        description="Pages whose dead letter SQS refused to send back, with the reason: still in the DLQ."
    )
    ClearedTasks: int = Field(description="Task instances cleared (the consumer and what follows it).")


class JobRerun(BaseModel):
    """``POST /jobs/{id}/rerun-failed`` answer: what runs again, in the same job."""

    JobId: str
    Pages: list[str] = Field(
        description="The pages that run again: fetched again (their fetch task was cleared) or "
        "processed again (their dead letter was moved back)."
    )
    FetchTasks: list[int] = Field(
        description="The fetch_pages map indexes cleared (their pages are fetched again)."
    )
    Moved: list[str] = Field(description="Pages whose dead letter went back to the processing queue.")
    Failed: dict[str, str] = Field(
        description="Pages whose dead letter SQS refused to send back, with the reason: still in the DLQ "
        "(their fetch task is cleared instead, which announces the saved page again)."
    )
    ClearedTasks: int = Field(
        description="Task instances cleared: those fetch tasks, the consumer and what follows it."
    )
