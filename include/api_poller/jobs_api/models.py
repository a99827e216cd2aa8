"""The job API's request and answer documents (pydantic; no Airflow needed).

The request body is derived from the one job-request definition (``api_poller.core.job_request``):
the same fields, limits, titles, descriptions and error messages as the DAG's Params and the
plan step's validation.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from api_poller.core.errors import InvalidJobRequest
from api_poller.core.job_request import INT_FIELDS, URL

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


def _request_fields() -> dict[str, Any]:
    fields: dict[str, Any] = {
        URL.name: (
            Annotated[str, Field(max_length=URL.max_length), _checked_by(URL.check)],
            Field(title=URL.title, description=URL.description),
        )
    }
    for spec in INT_FIELDS:
        number = Annotated[int, Field(ge=spec.minimum, le=spec.maximum)]
        fields[spec.name] = (
            Annotated[number | None, _checked_by(spec.check)],
            Field(
                default=None, title=spec.title, description=f"{spec.description} Omitted: the DAG's default."
            ),
        )
    return fields


# The body of ``POST /jobs``: built from the job-request definition at import time; type checkers
# see the base class (the fields are dynamic).
if TYPE_CHECKING:
    JobRequestBody = JobRequestBase
else:
    JobRequestBody = create_model("JobRequestBody", __base__=JobRequestBase, **_request_fields())


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
    JobId: str
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
    Total: int
    Pages: list[PageDetail]


class JobRedriven(BaseModel):
    """``POST /jobs/{id}/redrive`` answer."""

    JobId: str
    Moved: list[str] = Field(description="Pages whose dead letter went back to the processing queue.")
    Failed: dict[str, str] = Field(
        description="Pages whose dead letter SQS refused to send back, with the reason: still in the DLQ."
    )
    ClearedTasks: int = Field(description="Task instances cleared (the consumer and what follows it).")
