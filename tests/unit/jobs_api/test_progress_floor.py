"""A retried task instance's pages do not fall back in the job's progress (issue 14).

Airflow deletes a task instance's XComs when its new try starts; until the try publishes again,
the job API counts the task instance's S3 checkpoint instead, and only for such a task instance
(a first try without statuses costs no S3 call).
"""

from __future__ import annotations

from urllib.parse import quote

import boto3

from api_poller import names
from api_poller.aws.status_checkpoint import StatusCheckpoint
from api_poller.core.lifecycle import Publication, StatusRecorder
from api_poller.core.status_document import chunk_key
from tests.unit.jobs_api.conftest import JobsApi

PARTNER = "http://127.0.0.1:9/payload"
DONE = {"state": "SuccessfullyCompleted", "at": 5.0}
PLAN = [{"batch": [{"page": page, "start_at": page * 10, "count": 10} for page in range(4)]}]


def record(state: str, at: float = 5.0) -> dict:
    return {"state": state, "at": at}


def set_xcom(job_id: str, task_id: str, key: str, value: object, map_index: int = -1) -> None:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        where = {"dag_id": "api_poller", "task_id": task_id, "run_id": job_id, "map_index": map_index}
        XComModel.set(key, value, session=session, **where)


def publication(records: dict[str, dict]) -> Publication:
    """What a task instance whose records are ``records`` publishes (summary and chunks)."""
    out: list[Publication] = []
    StatusRecorder(out.append, interval=0, floor=records).flush()
    return out[-1]


def publish_xcoms(job_id: str, task_id: str, records: dict[str, dict], map_index: int = -1) -> None:
    """The task instance's status XComs, as ``adapters.status_publishing`` writes them."""
    published = publication(records)
    for chunk, chunk_records in published.chunks.items():
        set_xcom(job_id, task_id, chunk_key(names.STATUS_KEY, chunk), chunk_records, map_index)
    set_xcom(job_id, task_id, names.STATUS_KEY, published.summary, map_index)


def set_try_number(job_id: str, task_id: str, try_number: int) -> int:
    """Put the task's instance on its ``try_number``-th try; its map index."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        ti = session.scalars(
            select(TaskInstance).where(TaskInstance.run_id == job_id, TaskInstance.task_id == task_id)
        ).one()
        ti.try_number = try_number
        return int(ti.map_index)


def test_a_retried_task_counts_with_its_checkpoint_until_it_publishes_again(jobs_api: JobsApi):
    answer = jobs_api.client.post("/jobs", json={"url": PARTNER, "fetch_tasks": 1})
    job_id = answer.json()["jobId"]
    path = f"/jobs/{quote(job_id, safe='')}"
    set_xcom(job_id, names.PLAN_TASK, names.RETURN_VALUE_KEY, PLAN)
    set_xcom(job_id, names.PLAN_TASK, names.TOTAL_PAGES_KEY, 4)
    s3 = boto3.client("s3", region_name="us-east-1")
    bucket = jobs_api.settings.raw_bucket
    s3.create_bucket(Bucket=bucket)

    # The consumer published (a status of the earlier format: still read); the fetch task is on its
    # first try and has published nothing: its stale checkpoint (from another run of the same id,
    # say) is not read.
    set_xcom(job_id, names.CONSUME_TASK_ID, names.STATUS_KEY, {"page-000000": DONE})
    fetch_index = set_try_number(job_id, names.FETCH_TASK, 1)
    checkpoint = StatusCheckpoint(s3, bucket, job_id, names.FETCH_TASK, fetch_index)
    checkpoint.write(publication({f"page-00000{page}": record("Enqueued") for page in range(4)}))
    progress = jobs_api.client.get(path).json()
    assert (progress["Enqueued"], progress["SuccessfullyCompleted"]) == (0, 1)

    # Its second try started (XComs deleted) and has not published yet: the checkpoint counts.
    set_try_number(job_id, names.FETCH_TASK, 2)
    progress = jobs_api.client.get(path).json()
    assert (progress["Enqueued"], progress["SuccessfullyCompleted"]) == (3, 1)
    pages = jobs_api.client.get(f"{path}/tasks").json()["Pages"]
    assert [page["State"] for page in pages] == ["SuccessfullyCompleted", "Enqueued", "Enqueued", "Enqueued"]
    assert [page["UpdatedAt"] is not None for page in pages] == [True] * 4  # its records too

    # Once the try publishes, its XCom is what counts (the checkpoint is not read again).
    publish_xcoms(
        job_id, names.FETCH_TASK, {f"page-00000{page}": record("Enqueued") for page in (1, 2)}, fetch_index
    )
    progress = jobs_api.client.get(path).json()
    assert (progress["Enqueued"], progress["SuccessfullyCompleted"]) == (2, 1)


def test_a_missing_or_unreadable_checkpoint_leaves_the_progress_as_published(jobs_api: JobsApi):
    answer = jobs_api.client.post("/jobs", json={"url": PARTNER, "fetch_tasks": 1})
    job_id = answer.json()["jobId"]
    set_xcom(job_id, names.PLAN_TASK, names.TOTAL_PAGES_KEY, 4)
    set_xcom(job_id, names.CONSUME_TASK_ID, names.STATUS_KEY, {"page-000000": DONE})
    set_try_number(job_id, names.FETCH_TASK, 3)  # no bucket at all: the read fails quietly
    answer = jobs_api.client.get(f"/jobs/{quote(job_id, safe='')}")
    assert answer.status_code == 200
    assert answer.json()["SuccessfullyCompleted"] == 1
