"""Which fetch tasks a rerun of a job's failed pages clears, from what the job recorded.

A page is fetched by one ``fetch_pages`` map index (its batch, or a source's walk) and processed by
the consumer. To run a failed page again in the same job, its fetch task is cleared (the new try
skips the pages already saved or processed, see ``pipeline.fetch``), unless its dead letter was
moved back to the processing queue: then the consumer alone processes it again. A fetch task that
failed as a whole (it crashed after its retries) is cleared too: its pages never finished.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from api_poller import names
from api_poller.core.lifecycle import PageState
from api_poller.core.status_document import TaskStatus

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@dataclass(frozen=True)
class FetchRerun:
    """The fetch map indexes to clear and the pages they fetch again."""

    map_indexes: list[int]
    pages: list[str]


def failed_pages(statuses: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The job's FailedToComplete pages, in page order."""
    failed = PageState.FAILED_TO_COMPLETE
    return sorted(page for page, record in statuses.items() if record.get("state") == failed)


def fetch_owners(
    fetch_records: Mapping[int, Iterable[str]], planned: Mapping[str, Mapping[str, Any]]
) -> dict[str, int]:
    """Each known page's fetch map index: the one that recorded it (a walk's pages are only known
    that way; the lowest index if several did), else the plan's."""
    owners = {
        page: owner for page, entry in planned.items() if isinstance(owner := entry.get("FetchMapIndex"), int)
    }
    for map_index, records in sorted(fetch_records.items(), reverse=True):
        owners.update(dict.fromkeys(records, map_index))
    return owners


def fetch_owner(
    page: str, fetch_records: Mapping[int, Iterable[str]], planned: Mapping[str, Mapping[str, Any]]
) -> int | None:
    """The fetch map index that fetches ``page`` (see :func:`fetch_owners`); None if none knows it."""
    return fetch_owners(fetch_records, planned).get(page)


def fetch_rerun(
    failed: Collection[str],
    redriven: Collection[str],
    failed_fetch_tasks: Collection[int],
    fetch_records: Mapping[int, Iterable[str]],
    planned: Mapping[str, Mapping[str, Any]],
    statuses: Mapping[str, Mapping[str, Any]],
) -> FetchRerun:
    """The fetch tasks owning the failed pages not ``redriven``, and those that failed as a whole,
    with the pages they fetch again (the failed ones, and a failed task's unfinished ones)."""
    owners = fetch_owners(fetch_records, planned)  # once: a job may have 100,000 pages
    indexes = set(failed_fetch_tasks)
    indexes.update(owners[page] for page in failed if page not in redriven and page in owners)
    pages = [
        page
        for page in sorted(set(planned) | set(statuses))
        if page not in redriven
        and statuses.get(page, {}).get("state") != PageState.SUCCESSFULLY_COMPLETED
        and owners.get(page) in indexes
    ]
    return FetchRerun(sorted(indexes), pages)


def fetch_records_of(published: Mapping[tuple[str, int], TaskStatus]) -> dict[int, list[str]]:
    """The pages each fetch map index recorded, from the run's published status summaries
    (``adapters.progress.load_published_statuses``)."""
    return {
        index: summary.page_ids() for (task, index), summary in published.items() if task == names.FETCH_TASK
    }


# -- what the run recorded (Airflow's metadata database) -----------------------------------------------


def load_failed_fetch_tasks(dag_id: str, run_id: str, session: Session) -> list[int]:
    """The fetch map indexes that failed as a whole (or never ran because their upstream failed)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    failed = (TaskInstanceState.FAILED, TaskInstanceState.UPSTREAM_FAILED)
    return sorted(
        session.scalars(
            select(TaskInstance.map_index).where(
                TaskInstance.dag_id == dag_id,
                TaskInstance.run_id == run_id,
                TaskInstance.task_id == names.FETCH_TASK,
                TaskInstance.state.in_(failed),
                TaskInstance.map_index >= 0,
            )
        )
    )
