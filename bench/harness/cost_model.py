"""What a million records cost in AWS requests: the poller (counted) and the serverless sample (modelled).

Pure functions of request counts and a price list (``bench/cost.py`` holds the prices, runs the
counted jobs and writes the table). Free tiers, storage and data transfer are left out: both
designs keep the same raw pages, and neither pays transfer inside one region.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

RECORDS = 1_000_000


@dataclass(frozen=True)
class Line:
    """One priced line of a cost table."""

    service: str
    item: str
    quantity: float
    unit: str
    unit_price: float  # USD per one `unit`

    @property
    def usd(self) -> float:
        return self.quantity * self.unit_price


# S3 bills GET-class (GET, SELECT, HEAD) and PUT-class (PUT, COPY, POST, LIST) requests; DELETE
# is free. DeleteObjects is a POST: priced as PUT-class here, the dearer reading.
S3_FREE = frozenset({"DeleteObject", "DeleteBucket", "AbortMultipartUpload"})
S3_GET_CLASS_PREFIXES = ("Get", "Head", "Select")


def request_price(operation: str, prices: Mapping[str, float]) -> tuple[str, float]:
    """The price class and USD of one request of ``operation`` ("s3.PutObject")."""
    service, name = operation.split(".", 1)
    if service == "s3":
        if name in S3_FREE:
            return "S3 DELETE (free)", 0.0
        if name.startswith(S3_GET_CLASS_PREFIXES):
            return "S3 GET-class", prices["s3_get_class_per_1k"] / 1000
        return "S3 PUT-class", prices["s3_put_class_per_1k"] / 1000
    if service == "sqs":
        return "SQS standard", prices["sqs_per_million"] / 1e6
    raise ValueError(f"no price for {operation}: add its service to bench/harness/cost_model.py")


def pages_per_million(page_size: int) -> int:
    return math.ceil(RECORDS / page_size)


def scale_counts(
    per_page_counts: Mapping[str, int], per_job_counts: Mapping[str, int], run_pages: int, pages: int
) -> dict[str, float]:
    """Requests of a job of ``pages`` pages from a counted run of ``run_pages``: the requests of
    the tasks that handle pages grow with the pages, the others are made once a job."""
    scaled: dict[str, float] = {}
    for operation, count in per_page_counts.items():
        scaled[operation] = scaled.get(operation, 0.0) + count * pages / run_pages
    for operation, count in per_job_counts.items():
        scaled[operation] = scaled.get(operation, 0.0) + count
    return dict(sorted(scaled.items()))


# Calls that carry up to 10 pages when pages come together but one when they trickle in (the
# announcer's 0.2 s linger runs out, a receive finds one message): the counted run's batching
# depends on timing, this bounds it.
BATCHED_OPERATIONS = frozenset(
    {"sqs.SendMessageBatch", "sqs.ReceiveMessage", "sqs.DeleteMessageBatch", "s3.DeleteObjects"}
)


def one_page_batches(requests: Mapping[str, float], pages: int) -> dict[str, float]:
    """``requests`` as if every batched call carried a single page."""
    return {op: max(count, pages) if op in BATCHED_OPERATIONS else count for op, count in requests.items()}


def poller_lines(requests: Mapping[str, float], prices: Mapping[str, float]) -> list[Line]:
    """The poller's requests for a job, priced one operation a line."""
    lines = []
    for operation, quantity in requests.items():
        price_class, price = request_price(operation, prices)
        service = operation.split(".")[0].upper()
        lines.append(Line(service, f"{operation} ({price_class})", quantity, "request", price))
    return lines


@dataclass(frozen=True)
class ServerlessAssumptions:
    """What the serverless sample's documented flow leaves open, for the seed's workload."""

    error_rate: float = 0.1  # the partner's transient errors (the seed's simulator: 10%)
    max_attempts: int = 6  # FetchPayload's Retry: MaxAttempts 6 on RetriablePollerError
    lambda_memory_gb: float = 0.125  # 128 MB, the SAM default (the sample sets none)
    fetch_seconds: float = 0.55  # one FetchPayload attempt: the partner's 0-1000 ms (mean 0.5 s) + the S3 PUT
    process_seconds_per_page: float = 0.03  # ProcessPayload: one S3 DELETE + one DynamoDB write per page
    process_batch_size: int = 25  # the SQS event source's BatchSize
    messages_per_receive: int = 10  # SQS's most per ReceiveMessage (the Lambda pollers' best case)


# The Map iterator's states a page enters on the success path: ReportProgress (Started),
# ChooseNextAction, FetchPayload, OnPayloadSaved, ReportProgress (PayloadSaved), ChooseNextAction,
# SendToSQS, OnSentToSQS, ReportProgress (Enqueued), ChooseNextAction, Done.
TRANSITIONS_PER_PAGE = 11
# Once a job: PreparePollerJob, ProcessPollerTasks (the Map), PollerJobComplete.
TRANSITIONS_PER_JOB = 3
# DynamoDB writes per page, one per status change: Started, PayloadSaved, Enqueued (PutItem from
# the state machine) and SuccessfullyCompleted (BatchWriteItem of one item from ProcessPayload).
STATUS_WRITES_PER_PAGE = 4


def expected_attempts(error_rate: float, max_attempts: int) -> float:
    """Mean FetchPayload attempts per page when each fails independently with ``error_rate``."""
    return sum(error_rate**attempt for attempt in range(max_attempts))


def serverless_lines(pages: int, prices: Mapping[str, float], assume: ServerlessAssumptions) -> list[Line]:
    """The serverless sample's requests and compute for a job of ``pages`` pages, priced."""
    attempts = expected_attempts(assume.error_rate, assume.max_attempts)
    retries = pages * (attempts - 1)  # each retry is a state transition and an invocation
    process_invocations = math.ceil(pages / assume.process_batch_size)
    batches = math.ceil(pages / assume.messages_per_receive)
    gb_seconds = assume.lambda_memory_gb * (
        pages * attempts * assume.fetch_seconds + pages * assume.process_seconds_per_page
    )
    sqs = prices["sqs_per_million"] / 1e6
    s3_put = prices["s3_put_class_per_1k"] / 1000
    transitions = (
        f"standard-workflow transitions ({TRANSITIONS_PER_PAGE}/page + retries + {TRANSITIONS_PER_JOB}/job)"
    )
    return [
        Line("API Gateway", "POST /jobs (HTTP API)", 1, "request", prices["apigw_http_per_million"] / 1e6),
        Line("EventBridge", "the job's custom event", 1, "event", prices["eventbridge_per_million"] / 1e6),
        Line(
            "Step Functions",
            transitions,
            pages * TRANSITIONS_PER_PAGE + retries + TRANSITIONS_PER_JOB,
            "transition",
            prices["sfn_standard_per_1k_transitions"] / 1000,
        ),
        Line(
            "Lambda",
            "invocations (FetchPayload per attempt, ProcessPayload per batch, PreparePollerJob)",
            pages * attempts + process_invocations + 1,
            "request",
            prices["lambda_per_million_requests"] / 1e6,
        ),
        Line("Lambda", "compute (x86)", gb_seconds, "GB-s", prices["lambda_per_gb_second"]),
        Line(
            "DynamoDB",
            f"status writes, on-demand ({STATUS_WRITES_PER_PAGE}/page, items < 1 KB)",
            pages * STATUS_WRITES_PER_PAGE,
            "write request unit",
            prices["dynamodb_per_million_wru"] / 1e6,
        ),
        Line("SQS", "sqs.SendMessage (one per page, from the state machine)", pages, "request", sqs),
        Line("SQS", "sqs.ReceiveMessage (Lambda pollers, 10 a receive at best)", batches, "request", sqs),
        Line("SQS", "sqs.DeleteMessageBatch (Lambda pollers)", batches, "request", sqs),
        Line("S3", "s3.PutObject (FetchPayload, PUT-class)", pages, "request", s3_put),
        Line("S3", "s3.DeleteObject (ProcessPayload, DELETE: free)", pages, "request", 0.0),
    ]


def total_usd(lines: list[Line]) -> float:
    return sum(line.usd for line in lines)


def total_requests(lines: list[Line]) -> float:
    """Every billed unit that is a request, a transition, an event or a write (not GB-s)."""
    return sum(line.quantity for line in lines if line.unit != "GB-s")
