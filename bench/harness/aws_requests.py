"""Count the AWS requests this process sends, by operation, from botocore's own events.

Every boto3 client (the Amazon provider's S3Hook and SqsHook, plain ``boto3.client``) sends its
requests through a botocore Session, and every Session registers the handlers listed in
``botocore.handlers.BUILTIN_HANDLERS`` when it is created. Adding a ``before-send`` handler there
(moto's in-process mock hooks in the same way) therefore reaches the clients of every session
created while counting, whichever code builds them, without touching the product: the hooks
make a new session per hook, and ``before-send`` fires once per HTTP request, retries included,
with the operation in its name (``before-send.s3.PutObject``). What it cannot see: clients whose
session existed before counting started, and other processes (count in process, e.g. under
``dag.test``).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from botocore.handlers import BUILTIN_HANDLERS, REGISTER_FIRST

EVENT = "before-send"
OUTSIDE_A_TASK = "(outside a task)"

_active: list[AwsRequestCounter] = []


class AwsRequestCounter:
    """Requests by (label, "service.Operation"); the label says who sent them (e.g. the task)."""

    def __init__(self, label: Callable[[], str] | None = None) -> None:
        self._label = label
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()

    def record(self, operation: str) -> None:
        label = self._label() if self._label else ""
        with self._lock:
            self._counts[label, operation] += 1

    def by_operation(self) -> dict[str, int]:
        """Requests per operation ("s3.PutObject"), whoever sent them."""
        totals: Counter[str] = Counter()
        with self._lock:
            for (_, operation), count in self._counts.items():
                totals[operation] += count
        return dict(sorted(totals.items()))

    def by_label(self) -> dict[str, dict[str, int]]:
        """Requests per label, then per operation."""
        result: dict[str, dict[str, int]] = {}
        with self._lock:
            for (label, operation), count in sorted(self._counts.items()):
                result.setdefault(label, {})[operation] = count
        return result

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())


def operation_of(event_name: str) -> str:
    """``before-send.s3.PutObject`` -> ``s3.PutObject``."""
    return event_name.split(".", 1)[1]


# A task instance's page-status checkpoint (``core.keys.status_checkpoint_key``) is written per
# status flush, not per page: counted apart so the per-page budgets stay per page.
CHECKPOINT_MARK = "/status/"
CHECKPOINT_SUFFIX = "[status checkpoint]"


def _count_request(event_name: str = "", request: Any = None, **_: Any) -> None:
    # Registered on every session created while counting; does nothing once counting stopped.
    operation = operation_of(event_name)
    if CHECKPOINT_MARK in str(getattr(request, "url", "")):
        operation += CHECKPOINT_SUFFIX
    for counter in list(_active):
        counter.record(operation)


# First, so that a handler answering the request itself (moto's in-process mock) cannot hide it.
_HANDLER_SPEC = (EVENT, _count_request, REGISTER_FIRST)


@contextmanager
def counting_aws_requests(label: Callable[[], str] | None = None) -> Iterator[AwsRequestCounter]:
    """Count the requests of every botocore client created inside the block (see the module)."""
    counter = AwsRequestCounter(label)
    if _HANDLER_SPEC not in BUILTIN_HANDLERS:
        BUILTIN_HANDLERS.append(_HANDLER_SPEC)
    _active.append(counter)
    try:
        yield counter
    finally:
        _active.remove(counter)
        if not _active:
            BUILTIN_HANDLERS.remove(_HANDLER_SPEC)


def airflow_task_label() -> str:
    """The running Airflow task's id (a label for :func:`counting_aws_requests`).

    The Task SDK keeps the current context in a process-wide stack, so the fetch's and the
    consumer's worker threads see their task too.
    """
    from airflow.sdk import get_current_context

    try:
        return str(get_current_context()["ti"].task_id)
    except Exception:  # no task is running: the test's or the script's own calls
        return OUTSIDE_A_TASK


def per_page(counts: Mapping[str, int], pages: int) -> dict[str, float]:
    """Requests per page, by operation."""
    return {operation: count / pages for operation, count in counts.items()}
