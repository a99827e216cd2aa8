"""The SQS message that points the process step at a saved page."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from api_poller.status import PageState, StatusRecorder
from api_poller.storage import safe_job_id


@dataclass(frozen=True)
class PagePointer:
    """A saved raw page: enough for any consumer to find and process it."""

    job_id: str
    page_id: str
    bucket: str
    key: str
    start_at: int
    count: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PagePointer:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


def message_body(pointer: PagePointer) -> str:
    return json.dumps(
        {
            "jobId": pointer.job_id,
            "taskId": pointer.page_id,
            "bucket": pointer.bucket,
            "key": pointer.key,
            "startAt": pointer.start_at,
            "count": pointer.count,
        },
        sort_keys=True,
    )


def message_attributes(pointer: PagePointer) -> dict[str, dict[str, str]]:
    """``jobId`` / ``taskId`` attributes, as in the seed, so consumers can route without parsing."""
    return {
        "jobId": {"DataType": "String", "StringValue": safe_job_id(pointer.job_id)},
        "taskId": {"DataType": "String", "StringValue": pointer.page_id},
    }


def parse_message(message: Mapping[str, Any]) -> PagePointer:
    """The pointer carried by a received SQS message; ValueError if it is not one of ours."""
    try:
        body = json.loads(message["Body"])
        return PagePointer(
            job_id=str(body["jobId"]),
            page_id=str(body["taskId"]),
            bucket=str(body["bucket"]),
            key=str(body["key"]),
            start_at=int(body["startAt"]),
            count=int(body["count"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a page message: {exc}") from exc


def message_job_id(message: Mapping[str, Any]) -> str | None:
    attribute = message.get("MessageAttributes", {}).get("jobId", {})
    return attribute.get("StringValue")


def batches_of(items: list, size: int = 10) -> list[list]:
    """SQS batch calls take at most 10 entries."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def send_page_messages(
    sqs_client: Any,
    queue_url: str,
    pointers: list[PagePointer],
    recorder: StatusRecorder,
    attempts: int = 3,
) -> list[str]:
    """Publish one message per saved page, 10 per call; returns the page ids enqueued.

    Entries SQS refuses are sent again (up to ``attempts`` times), then recorded as failed.
    """
    enqueued: list[str] = []
    for batch in batches_of(pointers):
        pending = {str(i): pointer for i, pointer in enumerate(batch)}
        for _ in range(attempts):
            response = sqs_client.send_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {
                        "Id": entry_id,
                        "MessageBody": message_body(pointer),
                        "MessageAttributes": message_attributes(pointer),
                    }
                    for entry_id, pointer in pending.items()
                ],
            )
            for success in response.get("Successful", []):
                pointer = pending.pop(success["Id"])
                enqueued.append(pointer.page_id)
                recorder.mark(pointer.page_id, PageState.ENQUEUED, message_id=success["MessageId"])
            failures = {
                failure["Id"]: failure.get("Message", "unknown") for failure in response.get("Failed", [])
            }
            if not pending:
                break
        for entry_id, pointer in pending.items():
            reason = f"SQS refused the message: {failures.get(entry_id, 'unknown')}"
            recorder.mark(pointer.page_id, PageState.FAILED_TO_COMPLETE, reason=reason)
    recorder.flush()
    return enqueued


def change_visibility(sqs_client: Any, queue_url: str, messages: list[dict], seconds: int) -> None:
    """Make received messages visible again after ``seconds`` (0: at once), 10 per call."""
    for batch in batches_of(messages):
        sqs_client.change_message_visibility_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": seconds}
                for i, m in enumerate(batch)
            ],
        )
