"""Unit tests of api_poller.pipeline.consume: the process step's consumer, against moto in process.

Each test sets up the job's raw pages and messages the way the fetch step leaves them, a fake view
of the fetch step (finished or not, running or not, what it recorded), and runs a PageConsumer.
The queue has the product's redrive policy (maxReceiveCount 3); moto moves a message to the DLQ
on the receive after its third, as SQS does.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from api_poller.aws.messaging import PagePointer, send_message_batch
from api_poller.core.keys import processed_key, processed_prefix, raw_payload_key
from api_poller.core.lifecycle import PageState, StatusRecorder, summarize
from api_poller.core.planning import page_id
from api_poller.pipeline.consume import PageConsumer, RunOutcome
from api_poller.settings import PollerSettings
from tests.unit.pipeline.conftest import MotoStack

SETTINGS = PollerSettings()
JOB = "manual__2026-12-02T05:00:00+00:00"
OTHER_JOB = "manual__2026-12-02T06:00:00+00:00"
RECORDS_PER_PAGE = 10
# Long enough never to be reached when the behaviour is right; bounds a wrong one.
RUN_LIMIT = 30.0


def output_ids(stack: MotoStack, job_id: str = JOB) -> list[int]:
    """The record ids in a job's processed output."""
    ids = []
    for key in stack.keys(SETTINGS.processed_bucket, processed_prefix(job_id)):
        body = stack.s3.get_object(Bucket=SETTINGS.processed_bucket, Key=key)["Body"].read()
        ids.extend(json.loads(line)["id"] for line in body.splitlines())
    return ids


@dataclass
class FakeFetch:
    """The fetch step as a test wants it: finished or not, running or not, what it recorded."""

    finished: bool = True
    running: bool = False
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    def fetch_finished(self) -> bool:
        return self.finished

    def fetch_running(self) -> bool:
        return self.running

    def fetch_records(self) -> Mapping[str, Mapping[str, Any]]:
        return self.records


class CallCounter:
    """A boto3 client that counts the calls made through it."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: Counter[str] = Counter()
        self.put_keys: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            if name == "put_object":
                self.put_keys.append(kwargs["Key"])
            result = method(*args, **kwargs)
            if name == "receive_message" and result.get("Messages"):
                self.calls["receive_message (not empty)"] += 1
            return result

        return counted


class Crash(Exception):
    """The consumer's process died."""


class DiesOnDelete(CallCounter):
    """An SQS client whose first DeleteMessageBatch kills the consumer (after processing)."""

    def __getattr__(self, name: str) -> Any:
        if name == "delete_message_batch":
            raise Crash("killed before deleting its messages")
        return super().__getattr__(name)


def save_raw(
    stack: MotoStack, page: int, job_id: str = JOB, records: list[dict] | None = None
) -> PagePointer:
    """A raw page as the fetch step saves it; its pointer."""
    start = page * RECORDS_PER_PAGE
    payload = records if records is not None else [{"id": start + i} for i in range(RECORDS_PER_PAGE)]
    key = raw_payload_key(job_id, page_id(page))
    stack.s3.put_object(Bucket=SETTINGS.raw_bucket, Key=key, Body=json.dumps({"payload": payload}).encode())
    return pointer(page, job_id)


def pointer(page: int, job_id: str = JOB) -> PagePointer:
    """The message the fetch step sends for a page (whether or not its raw page exists)."""
    key = raw_payload_key(job_id, page_id(page))
    start = page * RECORDS_PER_PAGE
    return PagePointer(job_id, page_id(page), SETTINGS.raw_bucket, key, start, RECORDS_PER_PAGE)


def announce(stack: MotoStack, pointers: list[PagePointer], queue_url: str | None = None) -> None:
    for start in range(0, len(pointers), 10):
        batch = pointers[start : start + 10]
        _, failed = send_message_batch(stack.sqs, queue_url or stack.queue_url, batch)
        assert not failed


def enqueued(*pages: int) -> dict[str, dict[str, Any]]:
    """The fetch step's records of pages it enqueued."""
    return {page_id(page): {"state": PageState.ENQUEUED.value, "at": 1.0} for page in pages}


def consumer(
    stack: MotoStack,
    pages: range | list[int],
    fetch: FakeFetch,
    *,
    s3: Any = None,
    sqs: Any = None,
    retry_delay_seconds: int = 0,
) -> tuple[PageConsumer, StatusRecorder]:
    recorder = StatusRecorder(lambda value: None, interval=0.0)
    return (
        PageConsumer(
            s3=s3 or stack.s3,
            sqs=sqs or stack.sqs,
            queue_url=stack.queue_url,
            dead_letter_queue_url=stack.dead_letter_queue_url,
            raw_bucket=SETTINGS.raw_bucket,
            processed_bucket=SETTINGS.processed_bucket,
            job_id=JOB,
            pages=[page_id(page) for page in pages],
            recorder=recorder,
            fetch=fetch,
            max_receive_count=SETTINGS.max_receive_count,
            retry_delay_seconds=retry_delay_seconds,
            wait_time_seconds=0,
            workers=4,
            housekeeping_seconds=0.0,
        ),
        recorder,
    )


def state(recorder: StatusRecorder, page: int) -> str | None:
    record = recorder.records.get(page_id(page))
    return record["state"] if record else None


# --- processing -------------------------------------------------------------------------------


def test_every_announced_page_is_processed_and_its_raw_page_and_message_deleted(stack: MotoStack) -> None:
    announce(stack, [save_raw(stack, page) for page in range(12)])
    job, recorder = consumer(stack, range(12), FakeFetch(records=enqueued(*range(12))))

    assert job.run(RUN_LIMIT) is RunOutcome.SETTLED

    assert sorted(output_ids(stack)) == list(range(12 * RECORDS_PER_PAGE))
    assert summarize(recorder.records, 12)["SuccessfullyCompleted"] == 12
    assert recorder.records[page_id(3)]["records"] == RECORDS_PER_PAGE
    assert recorder.records[page_id(3)]["processed_key"] == processed_key(JOB, page_id(3))
    assert stack.keys(SETTINGS.raw_bucket) == []
    assert stack.depth(stack.queue_url) == {"visible": 0, "in_flight": 0}


def test_raw_pages_and_messages_are_deleted_one_call_per_received_batch(stack: MotoStack) -> None:
    announce(stack, [save_raw(stack, page) for page in range(25)])
    s3, sqs = CallCounter(stack.s3), CallCounter(stack.sqs)
    job, _ = consumer(stack, range(25), FakeFetch(records=enqueued(*range(25))), s3=s3, sqs=sqs)

    assert job.run(RUN_LIMIT) is RunOutcome.SETTLED

    batches = sqs.calls["receive_message (not empty)"]
    assert batches < 25  # messages come up to 10 at a time
    assert sqs.calls["delete_message_batch"] == batches
    assert s3.calls["delete_objects"] == batches
    assert sqs.calls["delete_message"] == 0 and s3.calls["delete_object"] == 0


def test_a_message_seen_again_after_its_page_was_processed_is_only_deleted(stack: MotoStack) -> None:
    fetch = FakeFetch(finished=False, running=False, records=enqueued(0, 1))
    first = save_raw(stack, 0)
    announce(stack, [first])
    s3 = CallCounter(stack.s3)
    job, recorder = consumer(stack, range(2), fetch, s3=s3)
    assert job.run(RUN_LIMIT, yield_when_idle_seconds=0.01) is RunOutcome.GAVE_WAY
    output = stack.s3.get_object(Bucket=SETTINGS.processed_bucket, Key=processed_key(JOB, page_id(0)))

    # SQS delivers page 0's message again (at least once), alongside page 1's.
    s3.put_keys.clear()
    announce(stack, [first, save_raw(stack, 1)])
    fetch.finished = True
    assert job.run(RUN_LIMIT) is RunOutcome.SETTLED

    assert processed_key(JOB, page_id(0)) not in s3.put_keys  # not processed again
    again = stack.s3.get_object(Bucket=SETTINGS.processed_bucket, Key=processed_key(JOB, page_id(0)))
    assert again["ETag"] == output["ETag"] and again["LastModified"] == output["LastModified"]
    assert sorted(output_ids(stack)) == list(range(2 * RECORDS_PER_PAGE))  # each record once
    assert state(recorder, 0) == PageState.SUCCESSFULLY_COMPLETED
    assert recorder.records[page_id(0)]["records"] == RECORDS_PER_PAGE
    assert summarize(recorder.records, 2)["SuccessfullyCompleted"] == 2
    assert stack.depth(stack.queue_url) == {"visible": 0, "in_flight": 0}


def test_another_jobs_message_is_processed_but_never_recorded_or_settled_for_this_job(
    stack: MotoStack,
) -> None:
    # The other job's page has the same page id as one of this job's.
    announce(stack, [save_raw(stack, 0, job_id=OTHER_JOB), save_raw(stack, 1)])
    job, recorder = consumer(stack, range(2), FakeFetch(finished=False, running=False))

    assert job.run(RUN_LIMIT, yield_when_idle_seconds=0.01) is RunOutcome.GAVE_WAY

    assert sorted(output_ids(stack, OTHER_JOB)) == list(range(RECORDS_PER_PAGE))  # processed for it
    assert stack.depth(stack.queue_url) == {"visible": 0, "in_flight": 0}
    assert page_id(0) not in recorder.records
    assert job.pending == {page_id(0)}
    assert state(recorder, 1) == PageState.SUCCESSFULLY_COMPLETED


# --- failures and the dead-letter queue -------------------------------------------------------


def test_a_failed_message_is_offered_again_only_after_the_retry_delay(stack: MotoStack) -> None:
    announce(stack, [save_raw(stack, 0, records=[{"no": "id"}])])
    job, recorder = consumer(stack, [0], FakeFetch(finished=False, running=True), retry_delay_seconds=600)

    assert job.run(0.5) is RunOutcome.PENDING

    assert stack.depth(stack.queue_url) == {"visible": 0, "in_flight": 1}
    record = recorder.records[page_id(0)]
    assert record["state"] == PageState.ENQUEUED
    assert record["receives"] == 1
    assert "record 0 has no 'id'" in record["error"]


def test_a_page_that_fails_three_times_is_dead_lettered_and_failed_with_its_last_error(
    stack: MotoStack,
) -> None:
    announce(stack, [save_raw(stack, 0, records=[{"no": "id"}]), save_raw(stack, 1)])
    job, recorder = consumer(stack, range(2), FakeFetch(records=enqueued(0, 1)))

    assert job.run(RUN_LIMIT) is RunOutcome.SETTLED

    record = recorder.records[page_id(0)]
    assert record["state"] == PageState.FAILED_TO_COMPLETE
    assert record["reason"] == f"dead-lettered after 3 receives: {page_id(0)}: record 0 has no 'id'"
    assert record["dead_letter_message_id"]
    assert state(recorder, 1) == PageState.SUCCESSFULLY_COMPLETED
    # Left in the DLQ, visible, for inspection and redrive.
    assert stack.depth(stack.dead_letter_queue_url) == {"visible": 1, "in_flight": 0}
    assert stack.depth(stack.queue_url) == {"visible": 0, "in_flight": 0}


def test_other_jobs_dead_letters_are_left_visible_and_unrecorded(stack: MotoStack) -> None:
    announce(stack, [pointer(0, job_id=OTHER_JOB), pointer(5, job_id=OTHER_JOB)], stack.dead_letter_queue_url)
    announce(stack, [save_raw(stack, 0, records=[{"no": "id"}])])
    job, recorder = consumer(stack, [0], FakeFetch(records=enqueued(0)))

    assert job.run(RUN_LIMIT) is RunOutcome.SETTLED

    assert state(recorder, 0) == PageState.FAILED_TO_COMPLETE
    assert page_id(5) not in recorder.records
    assert stack.depth(stack.dead_letter_queue_url) == {"visible": 3, "in_flight": 0}


def test_a_message_whose_raw_page_is_gone_succeeds_from_the_processed_output(stack: MotoStack) -> None:
    key = processed_key(JOB, page_id(0))
    stack.s3.put_object(Bucket=SETTINGS.processed_bucket, Key=key, Body=b"{}\n", Metadata={"records": "7"})
    announce(stack, [pointer(0)])  # its raw page was deleted by the consumer that processed it
    job, recorder = consumer(stack, [0], FakeFetch(records=enqueued(0)))

    assert job.run(RUN_LIMIT) is RunOutcome.SETTLED

    record = recorder.records[page_id(0)]
    assert record["state"] == PageState.SUCCESSFULLY_COMPLETED
    assert record["processed_key"] == key and record["records"] == 7  # from the message, not a guess
    assert stack.depth(stack.queue_url) == {"visible": 0, "in_flight": 0}


def test_a_message_whose_raw_page_and_output_are_both_gone_fails_with_a_clear_reason(
    stack: MotoStack,
) -> None:
    announce(stack, [pointer(0)])
    job, recorder = consumer(stack, [0], FakeFetch(records=enqueued(0)))

    assert job.run(RUN_LIMIT) is RunOutcome.SETTLED

    record = recorder.records[page_id(0)]
    assert record["state"] == PageState.FAILED_TO_COMPLETE
    raw_key = raw_payload_key(JOB, page_id(0))
    assert record["reason"] == f"dead-lettered after 3 receives: {page_id(0)}: raw object {raw_key} is gone"


# --- the fetch step's outcomes, restarts, giving way ------------------------------------------


def test_pages_the_fetch_never_enqueued_are_settled_only_once_the_fetch_has_finished(
    stack: MotoStack,
) -> None:
    fetch = FakeFetch(finished=False, running=False)
    announce(stack, [save_raw(stack, 0)])
    job, recorder = consumer(stack, range(4), fetch)
    assert job.run(RUN_LIMIT, yield_when_idle_seconds=0.01) is RunOutcome.GAVE_WAY
    assert job.pending == {page_id(1), page_id(2), page_id(3)}  # the fetch may still send them

    fetch.finished = True
    fetch.records = {
        **enqueued(0),
        page_id(1): {"state": PageState.FAILED_TO_COMPLETE.value, "reason": "HTTP 404", "at": 1.0},
        page_id(2): {"state": PageState.PAYLOAD_SAVED.value, "at": 1.0},
        # page 3: its fetch task died before recording anything.
    }
    assert job.run(RUN_LIMIT) is RunOutcome.SETTLED

    assert state(recorder, 0) == PageState.SUCCESSFULLY_COMPLETED
    assert page_id(1) not in recorder.records  # the fetch task recorded why it failed
    for page in (2, 3):
        assert state(recorder, page) == PageState.FAILED_TO_COMPLETE
        assert recorder.records[page_id(page)]["reason"].startswith("never enqueued")


def test_a_consumer_restarted_mid_batch_finishes_the_job_with_each_page_recorded_once(
    stack: MotoStack,
) -> None:
    # Messages a dead consumer received come back after the queue's visibility timeout.
    stack.sqs.set_queue_attributes(QueueUrl=stack.queue_url, Attributes={"VisibilityTimeout": "1"})
    announce(stack, [save_raw(stack, page) for page in range(25)])
    fetch = FakeFetch(records=enqueued(*range(25)))
    first, _ = consumer(stack, range(25), fetch, sqs=DiesOnDelete(stack.sqs))
    with pytest.raises(Crash):
        first.run(RUN_LIMIT)
    assert stack.depth(stack.queue_url)["in_flight"] > 0  # received, never deleted

    second, recorder = consumer(stack, range(25), fetch)
    assert second.run(RUN_LIMIT) is RunOutcome.SETTLED

    assert sorted(output_ids(stack)) == list(range(25 * RECORDS_PER_PAGE))
    assert summarize(recorder.records, 25) == {**summarize({}, 25), "SuccessfullyCompleted": 25}
    assert stack.depth(stack.queue_url) == {"visible": 0, "in_flight": 0}  # none left to the next job
    assert stack.keys(SETTINGS.raw_bucket) == []
    assert stack.depth(stack.dead_letter_queue_url) == {"visible": 0, "in_flight": 0}


def test_an_idle_consumer_gives_way_when_no_fetch_task_runs(stack: MotoStack) -> None:
    job, _ = consumer(stack, [0], FakeFetch(finished=False, running=False))

    assert job.run(RUN_LIMIT, yield_when_idle_seconds=0.01) is RunOutcome.GAVE_WAY
    assert job.pending == {page_id(0)}


def test_an_idle_consumer_keeps_waiting_while_a_fetch_task_runs(stack: MotoStack) -> None:
    job, _ = consumer(stack, [0], FakeFetch(finished=False, running=True))

    assert job.run(0.3, yield_when_idle_seconds=0.01) is RunOutcome.PENDING


def test_an_idle_consumer_never_gives_way_unless_asked(stack: MotoStack) -> None:
    job, _ = consumer(stack, [0], FakeFetch(finished=False, running=False))

    assert job.run(0.3) is RunOutcome.PENDING


# --- a walked job (total unknown): pages discovered as they are announced -----------------------


def walk_consumer(stack: MotoStack, fetch: FakeFetch) -> tuple[PageConsumer, StatusRecorder]:
    """A consumer of a walk: no planned pages, the job's pages come from its messages."""
    recorder = StatusRecorder(lambda value: None, interval=0.0)
    job = PageConsumer(
        s3=stack.s3,
        sqs=stack.sqs,
        queue_url=stack.queue_url,
        dead_letter_queue_url=stack.dead_letter_queue_url,
        raw_bucket=SETTINGS.raw_bucket,
        processed_bucket=SETTINGS.processed_bucket,
        job_id=JOB,
        pages=[],
        recorder=recorder,
        fetch=fetch,
        retry_delay_seconds=0,
        wait_time_seconds=0,
        workers=4,
        housekeeping_seconds=0.0,
        discover_pages=True,
    )
    return job, recorder


def test_a_walk_is_not_settled_while_its_fetch_goes_on_and_settles_on_the_fetch_recorded_pages(
    stack: MotoStack,
) -> None:
    # The walk has announced pages 1-3 so far and is still running.
    announce(stack, [save_raw(stack, page) for page in (1, 2, 3)])
    fetch = FakeFetch(finished=False, running=True, records=enqueued(1, 2, 3))
    job, recorder = walk_consumer(stack, fetch)

    # Every page announced so far is processed, but more may come: not settled.
    assert job.run(1.0) is RunOutcome.PENDING
    assert sorted(output_ids(stack)) == list(range(10, 40))
    assert [state(recorder, page) for page in (1, 2, 3)] == ["SuccessfullyCompleted"] * 3

    # The walk goes on (page 4), then ends: page 5 was saved but never enqueued (S3 refused the
    # message, say) and page 6 is the failure that ended it (a cursor that repeats).
    announce(stack, [save_raw(stack, 4)])
    fetch.finished, fetch.running = True, False
    fetch.records = {
        **enqueued(1, 2, 3, 4),
        page_id(5): {"state": PageState.PAYLOAD_SAVED.value, "at": 2.0},
        page_id(6): {"state": PageState.FAILED_TO_COMPLETE.value, "at": 2.0, "reason": "cursor repeats"},
    }

    assert job.run(RUN_LIMIT) is RunOutcome.SETTLED
    assert sorted(output_ids(stack)) == list(range(10, 50))
    assert state(recorder, 4) == "SuccessfullyCompleted"
    assert state(recorder, 5) == "FailedToComplete"
    assert "never enqueued" in recorder.records[page_id(5)]["reason"]
    assert state(recorder, 6) is None  # the fetch task recorded why; nothing to add
    assert job.pending == frozenset()
    assert stack.depth(stack.queue_url) == {"visible": 0, "in_flight": 0}


def test_a_walk_whose_pages_were_all_processed_before_a_retry_settles_from_s3(stack: MotoStack) -> None:
    announce(stack, [save_raw(stack, page) for page in (1, 2)])
    first, _ = walk_consumer(stack, FakeFetch(finished=False, running=True, records=enqueued(1, 2)))
    assert first.run(1.0) is RunOutcome.PENDING  # the walk was still going when this try died

    # A new try, after the walk ended: nothing is left on the queue, S3 holds the truth.
    retry, recorder = walk_consumer(stack, FakeFetch(records=enqueued(1, 2)))
    assert retry.run(RUN_LIMIT) is RunOutcome.SETTLED
    assert [state(recorder, page) for page in (1, 2)] == ["SuccessfullyCompleted"] * 2
    assert sorted(output_ids(stack)) == list(range(10, 30))
