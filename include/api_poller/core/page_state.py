"""The states a page moves through (see ``core.lifecycle``), in their own module so that the
status formats (``core.status_document``) and the recorder can both build on them."""

from __future__ import annotations

import enum


class PageState(enum.StrEnum):
    STARTED = "Started"
    PAYLOAD_SAVED = "PayloadSaved"
    ENQUEUED = "Enqueued"
    SUCCESSFULLY_COMPLETED = "SuccessfullyCompleted"
    FAILED_TO_COMPLETE = "FailedToComplete"

    @property
    def rank(self) -> int:
        """How far along the lifecycle the state is; both outcomes are final."""
        return _RANK[self]

    @property
    def is_final(self) -> bool:
        return self in (PageState.SUCCESSFULLY_COMPLETED, PageState.FAILED_TO_COMPLETE)


_RANK = {
    PageState.STARTED: 0,
    PageState.PAYLOAD_SAVED: 1,
    PageState.ENQUEUED: 2,
    PageState.SUCCESSFULLY_COMPLETED: 3,
    PageState.FAILED_TO_COMPLETE: 3,
}
