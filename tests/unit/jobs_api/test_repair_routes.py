"""Acting on a job: rerun its failed pages, replay it once per key, and who may do either.

The run's tasks and records are put into the states a finished job leaves (its fetch task mapped
over two batches); the routes then clear with Airflow's own ``clear`` on the SQLite database.
"""

from __future__ import annotations

from typing import Any

from api_poller import names
from tests.unit.jobs_api.conftest import JobsApi
from tests.unit.jobs_api.test_explain_routes import failed, record
from tests.unit.jobs_api.test_routes import dead_letter, job_path, queue_depth, start

DONE = {"state": "SuccessfullyCompleted", "at": 100.0}
ENQUEUED = {"state": "Enqueued", "at": 90.0}


def finish(job_id: str, fetch_states: dict[int, str], run_state: str = "failed") -> None:
    """The run ended: ``fetch_pages`` expanded to those map indexes (in those states), the plan
    succeeded, the consumer and report failed unless the run succeeded."""
    from airflow.models.dagbag import DBDagBag
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalar(select(DagRun).where(DagRun.run_id == job_id))
        fetch_task = DBDagBag().get_dag_for_run(run, session=session).get_task(names.FETCH_TASK)
        tis = {ti.task_id: ti for ti in run.get_task_instances(session=session)}
        unmapped = tis[names.FETCH_TASK]
        for map_index, state in fetch_states.items():
            if map_index == 0:
                unmapped.map_index, ti = 0, unmapped
            else:
                ti = TaskInstance(
                    fetch_task, run_id=job_id, map_index=map_index, dag_version_id=unmapped.dag_version_id
                )
                session.add(ti)
            ti.state = state
        tis[names.PLAN_TASK].state = "success"
        tis[names.PREPARE_RESOURCES_TASK].state = "success"
        end_state = "success" if run_state == "success" else "failed"
        tis[names.CONSUME_TASK_ID].state = tis[names.REPORT_TASK].state = end_state
        run.set_state(run_state)


def task_states(job_id: str) -> dict[tuple[str, int], str | None]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(TaskInstance.task_id, TaskInstance.map_index, TaskInstance.state).where(
                TaskInstance.run_id == job_id
            )
        )
        return {(task_id, map_index): state for task_id, map_index, state in rows}


def job_with_failed_pages(api: JobsApi) -> str:
    """Four pages in two batches: page 1 failed to fetch (batch 0), page 3 was dead-lettered (batch 1)."""
    job_id = start(api)
    plan = [
        {"batch": [{"page": n, "start_at": n * 10, "count": 10} for n in (0, 1)]},
        {"batch": [{"page": n, "start_at": n * 10, "count": 10} for n in (2, 3)]},
    ]
    fetch = {
        0: {"page-000000": DONE, "page-000001": failed("HTTP 404 from the partner")},
        1: {"page-000002": ENQUEUED, "page-000003": ENQUEUED},
    }
    consumer = {"page-000000": DONE, "page-000002": DONE, "page-000003": failed("dead-lettered after 3")}
    record(
        job_id,
        [
            (names.PLAN_TASK, names.RETURN_VALUE_KEY, plan),
            (names.PLAN_TASK, names.TOTAL_PAGES_KEY, 4),
            (names.CONSUME_TASK_ID, names.STATUS_KEY, consumer),
        ],
    )
    finish(job_id, {0: "success", 1: "success"})  # the mapped task instances the records belong to
    for map_index, statuses in fetch.items():
        record_mapped(job_id, map_index, statuses)
    return job_id


def record_mapped(job_id: str, map_index: int, statuses: dict[str, Any]) -> None:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        XComModel.set(
            names.STATUS_KEY,
            statuses,
            dag_id=names.POLLER_DAG_ID,
            task_id=names.FETCH_TASK,
            run_id=job_id,
            map_index=map_index,
            session=session,
        )


# -- rerun the failed pages -------------------------------------------------------------------------


def test_rerun_failed_clears_only_the_failed_pages_fetch_task_and_redrives_the_dead_letters(
    jobs_api: JobsApi,
):
    job_id = job_with_failed_pages(jobs_api)
    dead_letter(jobs_api, job_id, "page-000003")
    dead_letter(jobs_api, "manual__another-job", "page-000003")
    answer = jobs_api.client.post(job_path(job_id, "/rerun-failed"))
    assert answer.status_code == 200, answer.json()
    assert answer.json() == {
        "JobId": job_id,
        "Pages": ["page-000001", "page-000003"],  # fetched again, processed again
        "FetchTasks": [0],
        "Moved": ["page-000003"],
        "Failed": {},
        "ClearedTasks": 4,  # fetch_pages[0], the consumer, the report, end_of_job
    }
    states = task_states(job_id)
    assert states[(names.FETCH_TASK, 0)] is None  # cleared: it runs again
    assert states[(names.FETCH_TASK, 1)] == "success"  # its pages are done or redriven: left alone
    assert states[(names.CONSUME_TASK_ID, -1)] is None and states[(names.REPORT_TASK, -1)] is None
    assert states[(names.END_OF_JOB_TASK, -1)] is None  # the job's outcome is decided again
    assert states[(names.PLAN_TASK, -1)] == "success"  # upstream: not cleared
    assert jobs_api.client.get(job_path(job_id)).json()["State"] == "queued"  # the same job, again
    assert (queue_depth(jobs_api, jobs_api.queue), queue_depth(jobs_api, jobs_api.dead_letters)) == (1, 1)


def test_a_fetch_task_that_failed_as_a_whole_is_rerun_with_its_unfinished_pages(jobs_api: JobsApi):
    job_id = start(jobs_api)
    plan = [{"batch": [{"page": n, "start_at": n * 10, "count": 10} for n in (0, 1)]}]
    record(
        job_id, [(names.PLAN_TASK, names.RETURN_VALUE_KEY, plan), (names.PLAN_TASK, names.TOTAL_PAGES_KEY, 2)]
    )
    finish(job_id, {0: "failed"})
    record_mapped(job_id, 0, {"page-000000": DONE, "page-000001": {"state": "Started", "at": 80.0}})
    answer = jobs_api.client.post(job_path(job_id, "/rerun-failed")).json()
    assert (answer["Pages"], answer["FetchTasks"], answer["Moved"]) == (["page-000001"], [0], [])
    assert task_states(job_id)[(names.FETCH_TASK, 0)] is None


def test_a_job_without_failed_pages_has_nothing_to_rerun(jobs_api: JobsApi):
    job_id = start(jobs_api)
    finish(job_id, {0: "success"}, run_state="success")
    record_mapped(job_id, 0, {"page-000000": DONE})
    answer = jobs_api.client.post(job_path(job_id, "/rerun-failed"))
    assert answer.status_code == 409
    assert answer.json()["detail"] == f"Job {job_id!r} has nothing to rerun: no page of it failed"
    assert task_states(job_id)[(names.REPORT_TASK, -1)] == "success"  # untouched


def test_a_failed_plan_has_nothing_to_rerun_page_by_page(jobs_api: JobsApi):
    job_id = start(jobs_api)
    record(job_id, [(names.PLAN_TASK, names.PLAN_ERROR_KEY, "cannot plan the job: HTTP 404")])
    finish(job_id, {})
    answer = jobs_api.client.post(job_path(job_id, "/rerun-failed"))
    assert answer.status_code == 409
    assert "its plan failed (cannot plan the job: HTTP 404): replay the job" in answer.json()["detail"]


def test_a_running_job_is_not_rerun(jobs_api: JobsApi):
    job_id = start(jobs_api)
    answer = jobs_api.client.post(job_path(job_id, "/rerun-failed"))
    assert answer.status_code == 409
    assert (
        answer.json()["detail"]
        == f"Job {job_id!r} is still queued: rerun its failed pages once it has finished"
    )


# -- who may act --------------------------------------------------------------------------------------


def test_the_job_detail_lists_the_actions_the_user_may_take(jobs_api: JobsApi):
    job_id = start(jobs_api)
    actions = jobs_api.client.get(job_path(job_id)).json()["Actions"]
    assert actions == {"Replay": True, "Redrive": True, "RerunFailed": True}
    asked = {(method, entity) for method, entity, _ in jobs_api.allowed.asked}
    assert {("POST", "RUN"), ("PUT", "TASK_INSTANCE")} <= asked  # Airflow's own permissions
    jobs_api.allowed.startable = set()  # a read-only user
    actions = jobs_api.client.get(job_path(job_id)).json()["Actions"]
    assert actions == {"Replay": False, "Redrive": False, "RerunFailed": False}


def test_a_read_only_user_is_403_on_every_action(jobs_api: JobsApi):
    job_id = job_with_failed_pages(jobs_api)
    jobs_api.allowed.startable = set()
    for action in ("/replay", "/redrive", "/rerun-failed"):
        answer = jobs_api.client.post(job_path(job_id, action))
        assert answer.status_code == 403, (action, answer.json())
    assert task_states(job_id)[(names.REPORT_TASK, -1)] == "failed"  # nothing was cleared


# -- replay once per key ----------------------------------------------------------------------------


def test_a_replay_repeated_with_the_same_key_answers_the_first_replay(jobs_api: JobsApi):
    job_id = start(jobs_api)
    key = {"Idempotency-Key": "3f0c6c1e-6f7e-4a39-9d1f-5f0f9e6c2b11"}
    first = jobs_api.client.post(job_path(job_id, "/replay"), headers=key)
    again = jobs_api.client.post(job_path(job_id, "/replay"), headers=key)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()  # the same replay: same job id, ReplayOf
    assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    other = jobs_api.client.post(job_path(job_id, "/replay"), headers={"Idempotency-Key": "another"})
    assert other.status_code == 201 and other.json()["jobId"] != first.json()["jobId"]
    replays = [job for job in jobs_api.client.get("/jobs?limit=100").json()["Jobs"] if job["JobId"] in
               {first.json()["jobId"], other.json()["jobId"]}]  # fmt: skip
    assert len(replays) == 2


def test_a_replay_without_a_key_starts_a_new_job_each_time(jobs_api: JobsApi):
    job_id = start(jobs_api)
    first, second = (jobs_api.client.post(job_path(job_id, "/replay")).json()["jobId"] for _ in range(2))
    assert first != second


def test_a_malformed_idempotency_key_is_422(jobs_api: JobsApi):
    job_id = start(jobs_api)
    for key in ("has spaces", "x" * 256):
        answer = jobs_api.client.post(job_path(job_id, "/replay"), headers={"Idempotency-Key": key})
        assert answer.status_code == 422
        assert answer.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]


# -- one page ---------------------------------------------------------------------------------------


def test_one_page_of_a_job(jobs_api: JobsApi):
    job_id = job_with_failed_pages(jobs_api)
    page = jobs_api.client.get(job_path(job_id, "/tasks/page-000001"))
    assert page.status_code == 200
    assert (page.json()["State"], page.json()["Reason"], page.json()["FetchMapIndex"]) == (
        "FailedToComplete",
        "HTTP 404 from the partner",
        0,
    )


def test_a_page_the_job_does_not_have_is_404_naming_its_pages(jobs_api: JobsApi):
    job_id = job_with_failed_pages(jobs_api)
    answer = jobs_api.client.get(job_path(job_id, "/tasks/page-000042"))
    assert answer.status_code == 404
    assert answer.json()["detail"] == (
        f"Page 'page-000042' not found in job {job_id!r}: its pages are page-000000 .. page-000003"
    )


def test_a_page_id_that_is_no_page_id_is_422(jobs_api: JobsApi):
    answer = jobs_api.client.get(job_path(start(jobs_api), "/tasks/first-page"))
    assert answer.status_code == 422
    assert (
        answer.json()["detail"]
        == "'first-page' is not a page id: page ids look like page-000042 (see /tasks)"
    )
