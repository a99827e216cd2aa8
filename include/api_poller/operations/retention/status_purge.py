"""The status purge: which XComs of the poller's runs can go, and purging them.

``airflow db clean`` ages an XCom row by its own ``timestamp`` (when the task wrote it), not by
the end of its run. A plain cutoff of ``now - retention`` would therefore split a run that was in
progress at that instant (its early XComs gone, its summary kept), and could reach into a run
that has been running for longer than the retention. :func:`purge_cutoff` moves the cutoff back
to the start of any run that spans it, so a job's status is purged all at once, and only after
its run ended more than the retention ago.

Where the runs are listed and the XComs purged is a :class:`StatusStore`: the metadata database
(``metadata_db``) or Airflow's CLI (``mwaa_cli``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from api_poller import names
from api_poller.operations.retention.timestamps import as_utc, days_phrase

log = logging.getLogger(__name__)

FINISHED_RUN_STATES = frozenset({"success", "failed"})


@dataclass(frozen=True)
class RunSpan:
    """When a DAG run can have written XComs: from ``first_activity`` to ``end_date``."""

    run_id: str
    state: str | None
    first_activity: datetime
    end_date: datetime | None  # None while the run is not finished

    @classmethod
    def from_fields(
        cls,
        run_id: str,
        state: str | None,
        *,
        run_after: datetime | str | None = None,
        queued_at: datetime | str | None = None,
        start_date: datetime | str | None = None,
        end_date: datetime | str | None = None,
    ) -> RunSpan:
        times = [t for t in (as_utc(value) for value in (run_after, queued_at, start_date)) if t is not None]
        if not times:
            raise ValueError(f"run {run_id} has no run_after, queued_at or start_date")
        first = min(times)
        state = str(state) if state else None
        # Unfinished: open. A run marked finished without ever running has no XComs: one instant.
        end = (as_utc(end_date) or first) if state in FINISHED_RUN_STATES else None
        return cls(run_id, state, first, end)


def purge_cutoff(runs: Iterable[RunSpan], cutoff: datetime) -> tuple[datetime, list[RunSpan]]:
    """The time before which every XCom of ``runs`` can be purged without splitting a run.

    Starts at ``cutoff`` and moves back to the first activity of any run that spans it (started
    before, not ended before it, or not finished), until no run does. Runs that ended before the
    result lose all their XComs; the others keep all theirs. Returns it and the runs that held it
    back.
    """
    runs = list(runs)
    before = cutoff
    holders: dict[str, RunSpan] = {}
    moved = True
    while moved:
        moved = False
        for run in runs:
            if run.first_activity < before and (run.end_date is None or run.end_date >= before):
                before = run.first_activity
                holders[run.run_id] = run
                moved = True
    return before, sorted(holders.values(), key=lambda run: run.first_activity)


class StatusStore(Protocol):
    """Where runs are listed and XComs purged: the metadata database, or Airflow's CLI."""

    def run_spans(self, dag_id: str) -> list[RunSpan]: ...

    def purge_xcoms_before(self, dag_id: str, before: datetime, dry_run: bool) -> int: ...


def db_clean_command(dag_id: str, before: datetime, dry_run: bool = False) -> list[str]:
    """``airflow db clean`` for one DAG's XComs written before ``before`` (no archive table)."""
    command = [
        "db", "clean",
        "--clean-before-timestamp", before.astimezone(UTC).isoformat(),
        "--tables", "xcom",
        "--dag-ids", dag_id,
        "--skip-archive", "--yes", "--error-on-cleanup-failure",
    ]  # fmt: skip
    return [*command, "--dry-run"] if dry_run else command


def purge_expired_status(
    store: StatusStore,
    *,
    as_of: datetime,
    retention_days: float,
    dag_id: str = names.POLLER_DAG_ID,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Purge the status (XComs) of the DAG's runs that ended ``retention_days`` before ``as_of``."""
    if retention_days <= 0:
        raise ValueError(f"the retention must be positive, got {retention_days} days")
    as_of = as_utc(as_of)
    cutoff = as_of - timedelta(days=retention_days)
    runs = store.run_spans(dag_id)
    before, holders = purge_cutoff(runs, cutoff)
    still_running = [run for run in holders if run.end_date is None]
    for run in still_running:
        log.warning(
            "run %s of %s has not finished since %s (longer than the %s retention): the status of "
            "jobs that ended after it started is kept until it finishes",
            run.run_id,
            dag_id,
            run.first_activity.isoformat(),
            days_phrase(retention_days),
        )
    rows = store.purge_xcoms_before(dag_id, before, dry_run)
    expired = sum(1 for run in runs if run.end_date is not None and run.end_date < before)
    log.info(
        "%s %d XCom rows of %s written before %s%s (%d runs ended before it; cutoff %s)",
        "would purge" if dry_run else "purged",
        rows,
        dag_id,
        before.isoformat(),
        "" if before == cutoff else f", held back by {[run.run_id for run in holders]}",
        expired,
        cutoff.isoformat(),
    )
    return {
        "dag_id": dag_id,
        "retention_days": retention_days,
        "as_of": as_of.isoformat(),
        "cutoff": cutoff.isoformat(),
        "purged_before": before.isoformat(),
        "held_back_by": [run.run_id for run in holders],
        "still_running": [run.run_id for run in still_running],
        "runs_ended_before": expired,
        "xcom_rows": rows,
        "dry_run": dry_run,
        "command": "airflow " + " ".join(db_clean_command(dag_id, before, dry_run)),
    }
