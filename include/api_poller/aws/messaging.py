"""The SQS message that points the process step at a saved page."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from api_poller.core.keys import safe_job_id

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef

    from api_poller.aws.clients import SqsClient

Item = TypeVar("Item")

DEFAULT_RECORDS_PATH = "payload"
DEFAULT_PRIMARY_KEY = "id"


@dataclass(frozen=True)
class PagePointer:
    """A saved raw page: enough for any consumer to find and process it."""

    job_id: str
    page_id: str
    bucket: str
    key: str
    start_at: int
    count: int
    # How to read the page (a source's; the defaults are the seed's): where its records are, the
    # field that identifies a record (None: counts only), and the incremental cursor field.
    records_path: str = DEFAULT_RECORDS_PATH
    primary_key: str | None = DEFAULT_PRIMARY_KEY
    cursor_field: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PagePointer:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})


def message_body(pointer: PagePointer) -> str:
    """The seed's message; a source's page adds how to read it (only what differs from the seed,
    so a seed message is byte for byte what it always was)."""
    body: dict[str, Any] = {
        "jobId": pointer.job_id,
        "taskId": pointer.page_id,
        "bucket": pointer.bucket,
        "key": pointer.key,
        "startAt": pointer.start_at,
        "count": pointer.count,
    }
    if pointer.records_path != DEFAULT_RECORDS_PATH:
        body["recordsPath"] = pointer.records_path
    if pointer.primary_key != DEFAULT_PRIMARY_KEY:
        body["primaryKey"] = pointer.primary_key
    if pointer.cursor_field is not None:
        body["cursorField"] = pointer.cursor_field
    return json.dumps(body, sort_keys=True)


def _optional_text(body: Mapping[str, Any], name: str, default: str | None) -> str | None:
    if name not in body:
        return default
    value = body[name]
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name} must be a string or null, got {value!r}")
    return value


def message_attributes(pointer: PagePointer) -> dict[str, MessageAttributeValueTypeDef]:
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
            records_path=_optional_text(body, "recordsPath", DEFAULT_RECORDS_PATH) or DEFAULT_RECORDS_PATH,
            primary_key=_optional_text(body, "primaryKey", DEFAULT_PRIMARY_KEY),
            cursor_field=_optional_text(body, "cursorField", None),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a page message: {exc}") from exc


def _attribute(message: Mapping[str, Any], name: str) -> str | None:
    return message.get("MessageAttributes", {}).get(name, {}).get("StringValue")


def message_job_id(message: Mapping[str, Any]) -> str | None:
    """The (sanitized) job id a message carries as its ``jobId`` attribute."""
    return _attribute(message, "jobId")


def message_page_id(message: Mapping[str, Any]) -> str | None:
    """The page id a message carries as its ``taskId`` attribute."""
    return _attribute(message, "taskId")


SQS_BATCH = 10


def batches_of(items: Sequence[Item], size: int = SQS_BATCH) -> list[Sequence[Item]]:
    """SQS batch calls take at most 10 entries."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def send_message_batch(
    sqs_client: SqsClient, queue_url: str, pointers: list[PagePointer], attempts: int = 3
) -> tuple[dict[str, str], dict[str, str]]:
    """Publish up to 10 pointers in one SendMessageBatch call (refused entries are sent again,
    up to ``attempts`` times): the message id per page sent, and the reason per page refused."""
    pending = {str(i): pointer for i, pointer in enumerate(pointers)}
    sent: dict[str, str] = {}
    refusals: dict[str, str] = {}
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
            sent[pending.pop(success["Id"]).page_id] = success["MessageId"]
        refusals = {f["Id"]: f.get("Message", "unknown") for f in response.get("Failed", [])}
        if not pending:
            break
    failed = {
        pointer.page_id: f"SQS refused the message: {refusals.get(entry_id, 'unknown')}"
        for entry_id, pointer in pending.items()
    }
    return sent, failed


SendBatch = Callable[[list[PagePointer]], tuple[dict[str, str], dict[str, str]]]


class PageAnnouncer:
    """Publishes saved pages while the fetch goes on, so processing starts with the first page.

    Pointers go out 10 per SendMessageBatch (in a thread, off the event loop); none waits longer
    than ``linger`` seconds for its batch to fill. ``on_sent(sent, failed)`` runs on the event loop
    with the message id per page sent and the reason per page that could not be.
    """

    def __init__(
        self,
        send: SendBatch,
        on_sent: Callable[[dict[str, str], dict[str, str]], None],
        linger: float = 0.2,
    ) -> None:
        self._send, self._on_sent, self._linger = send, on_sent, linger
        self._buffer: list[PagePointer] = []
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()

    def announce(self, pointer: PagePointer) -> None:
        self._buffer.append(pointer)
        if len(self._buffer) >= SQS_BATCH:
            self._launch()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._linger, self._launch)

    def _launch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._buffer = self._buffer[:SQS_BATCH], self._buffer[SQS_BATCH:]
        if batch:
            task = asyncio.get_running_loop().create_task(self._publish(batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        if self._buffer:
            self._timer = asyncio.get_running_loop().call_later(self._linger, self._launch)

    async def _publish(self, batch: list[PagePointer]) -> None:
        try:
            sent, failed = await asyncio.to_thread(self._send, batch)
        except Exception as exc:  # an SQS outage fails these pages, not the task
            sent, failed = {}, {pointer.page_id: f"could not enqueue: {exc}" for pointer in batch}
        self._on_sent(sent, failed)

    async def close(self) -> None:
        """Send whatever is buffered and wait for every batch in flight."""
        while self._buffer:
            self._launch()
        while self._sending:
            await asyncio.gather(*list(self._sending))


def delete_messages(sqs_client: SqsClient, queue_url: str, messages: Sequence[Mapping[str, Any]]) -> None:
    """Delete received messages, 10 per call."""
    for batch in batches_of(messages):
        sqs_client.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
        )


def change_visibility(
    sqs_client: SqsClient, queue_url: str, messages: Sequence[Mapping[str, Any]], seconds: int
) -> None:
    """Make received messages visible again after ``seconds`` (0: at once), 10 per call."""
    for batch in batches_of(messages):
        sqs_client.change_message_visibility_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": seconds}
                for i, m in enumerate(batch)
            ],
        )
