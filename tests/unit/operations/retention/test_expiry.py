"""A job's status is "expired" only once its run ended more than the retention ago and it is gone."""

from __future__ import annotations

from datetime import datetime

import pytest

from api_poller.operations.retention.expiry import job_expired
from tests.unit.operations.retention.seeding import DAY, T0


def test_a_job_whose_status_was_purged_after_the_retention_has_expired() -> None:
    message = job_expired("manual__x", T0 - 4 * DAY, status_present=False, retention_days=3, now=T0)
    assert message == (
        "job manual__x expired: its status was purged after 3 days (the job ended 2026-11-24 12:00 UTC)"
    )
    assert "after 1 day " in (job_expired("j", T0 - 2 * DAY, False, retention_days=1, now=T0) or "")


@pytest.mark.parametrize(
    ("end_date", "status_present"),
    [
        (T0 - 4 * DAY, True),  # ended long ago, status not purged yet: serve it
        (T0 - 2 * DAY, False),  # ended recently without any status (failed before planning)
        (None, False),  # still running
    ],
)
def test_a_job_is_not_expired_while_its_status_can_still_be_there(
    end_date: datetime | None, status_present: bool
) -> None:
    assert job_expired("j", end_date, status_present, retention_days=3, now=T0) is None
