"""moto's server with its SQS made O(1)-ish per message, for benchmarking at 10,000 pages.

moto 5.2.5's SQS scans the whole queue several times for every message sent or received (it builds
all queue attributes, including three approximate counts over every message, to read one of them)
and twice for every message deleted, and checks each message's visibility through a datetime
round trip. With
thousands of messages in the queue that makes enqueueing and consuming quadratic: a 1,000-page job
spent ~100 s enqueueing on this machine, and 10,000 pages would be dominated by the emulator.
Real SQS does none of this. These patches keep moto's behaviour (same answers, same API) and only
remove that cost; ``bench/run.py --stock-moto`` measures without them.

Usage: ``python bench/moto_server.py -H 127.0.0.1 -p PORT`` (moto.server's own arguments).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any


def apply_patches() -> None:
    import moto.sqs.models as sqs

    # 1. Visibility/delay checks: epoch milliseconds without a datetime round trip (same value).
    unix_time, unix_time_millis = sqs.unix_time, sqs.unix_time_millis
    sqs.unix_time = lambda dt=None: time.time() if dt is None else unix_time(dt)
    sqs.unix_time_millis = lambda dt=None: time.time() * 1000.0 if dt is None else unix_time_millis(dt)

    # 2. send_message (ContentBasedDeduplication) and receive_message (MessageRetentionPeriod, per
    #    message received) each read one attribute through ``queue.attributes``, which computes the
    #    approximate message counts by scanning the queue: skip the counts inside those two calls.
    inside = threading.local()

    def unless_inside(prop: property) -> property:
        def get(self: Any) -> Any:
            return 0 if getattr(inside, "active", False) else prop.fget(self)

        return property(get)

    for name in (
        "approximate_number_of_messages",
        "approximate_number_of_messages_delayed",
        "approximate_number_of_messages_not_visible",
    ):
        setattr(sqs.Queue, name, unless_inside(getattr(sqs.Queue, name)))

    def without_counts(method: Any) -> Any:
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            outer = getattr(inside, "active", False)
            inside.active = True
            try:
                return method(self, *args, **kwargs)
            finally:
                inside.active = outer

        return call

    for name in ("send_message", "is_message_valid_based_on_retention_period"):
        setattr(sqs.SQSBackend, name, without_counts(getattr(sqs.SQSBackend, name)))

    # 3. delete_message: one pass that stops at the message (moto scans the whole queue twice).
    def delete_message(self: Any, receipt_handle: str) -> None:
        if receipt_handle in self.deleted_messages:
            return  # already deleted: as moto, ignore
        messages = self._messages
        index = next((i for i, m in enumerate(messages) if m.had_receipt_handle(receipt_handle)), None)
        if index is None:
            raise sqs.ReceiptHandleIsInvalid()
        message = messages[index]
        self.pending_messages.discard(message)
        self.deleted_messages.update(message.all_receipt_handles)
        self._messages = messages[:index] + messages[index + 1 :]

    sqs.Queue.delete_message = delete_message


def main() -> int:
    apply_patches()
    from moto.server import main as moto_main

    moto_main(sys.argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
