"""The job API's routes, one by one, on the session's SQLite Airflow database (no PostgreSQL).

Jobs are created through ``POST /jobs`` (Airflow's own trigger function behind it); the run's
tasks are put into the states a finished job leaves, where a test needs them.
"""

from __future__ import annotations

from types import SimpleNamespace
from urllib.parse import quote

import pytest

from api_poller import names
from api_poller.aws.messaging import PagePointer, message_attributes, message_body
from api_poller.core.job_request import MAX_URL_LENGTH
from tests.unit.jobs_api.conftest import DEMO_DAG_ID, USER, JobsApi

PARTNER = "http://127.0.0.1:9/payload"  # loopback: allowed by the tests' allowlist


def start(api: JobsApi, body: dict | None = None) -> str:
    answer = api.client.post("/jobs", json=body or {"url": PARTNER, "fetch_tasks": 2})
    assert answer.status_code == 201, answer.json()
    return answer.json()["jobId"]


def job_path(job_id: str, suffix: str = "") -> str:
    return f"/jobs/{quote(job_id, safe='')}{suffix}"


def stored_run(job_id: str) -> tuple[SimpleNamespace, dict[str, str | None]]:
    """The run's fields the tests look at, and its task instances' states."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalar(select(DagRun).where(DagRun.run_id == job_id))
        states = {ti.task_id: ti.state for ti in run.get_task_instances(session=session)}
        fields = ("state", "run_type", "triggering_user_name", "conf", "triggered_by", "note")
        return SimpleNamespace(**{name: getattr(run, name) for name in fields}), states


def finish_with_failed_processing(job_id: str) -> None:
    """The run ended failed, its consumer and report failed (what a dead-lettered page leaves)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalar(select(DagRun).where(DagRun.run_id == job_id))
        for ti in run.get_task_instances(session=session):
            if ti.task_id in (names.CONSUME_TASK_ID, names.REPORT_TASK):
                ti.state = TaskInstanceState.FAILED
        run.set_state(DagRunState.FAILED)


def dead_letter(api: JobsApi, job_id: str, page_id: str) -> None:
    pointer = PagePointer(job_id, page_id, "raw", f"jobs/x/raw/{page_id}.json", 0, 10)
    api.sqs.send_message(
        QueueUrl=api.dead_letters,
        MessageBody=message_body(pointer),
        MessageAttributes=message_attributes(pointer),
    )


def queue_depth(api: JobsApi, url: str) -> int:
    attributes = api.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


# -- starting jobs ----------------------------------------------------------------------------------


def test_post_jobs_starts_a_queued_manual_run_by_the_user(jobs_api: JobsApi):
    answer = jobs_api.client.post("/jobs", json={"url": PARTNER, "fetch_tasks": 2})
    assert answer.status_code == 201
    body = answer.json()
    assert body["jobId"] == body["Entries"][0]["EventId"] and body["jobId"].startswith("manual__")
    assert (body["FailedEntryCount"], body["State"]) == (0, "queued")
    assert answer.headers["location"] == job_path(body["jobId"])
    run, _ = stored_run(body["jobId"])
    assert (run.run_type, run.triggering_user_name, run.conf) == (
        "manual",
        USER,
        {"url": PARTNER, "fetch_tasks": 2},
    )
    assert run.triggered_by.value == "rest_api"


def test_a_replay_is_a_new_job_with_the_same_conf_and_a_note(jobs_api: JobsApi):
    original = start(jobs_api)
    answer = jobs_api.client.post(job_path(original, "/replay"))
    assert answer.status_code == 201, answer.json()
    replay = answer.json()["jobId"]
    assert replay != original and answer.json()["ReplayOf"] == original
    run, _ = stored_run(replay)
    assert run.conf == {"url": PARTNER, "fetch_tasks": 2}
    assert run.note == f"Replay of job {original}"


def test_a_replay_of_a_conf_the_dags_params_refuse_is_422(jobs_api: JobsApi):
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import update

    original = start(jobs_api)
    with create_session() as session:  # as an older DAG version with other limits could have left it
        session.execute(
            update(DagRun).where(DagRun.run_id == original).values(conf={"url": PARTNER, "concurrency": 0})
        )
    answer = jobs_api.client.post(job_path(original, "/replay"))
    assert answer.status_code == 422
    assert "Invalid input for param concurrency" in answer.json()["detail"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://169.254.169.254/latest/meta-data", "not in API_POLLER_URL_ALLOWLIST"),
        ("https://no-such-host.invalid/payload", "does not resolve"),
        ("https://" + "a" * 2_000_000, f"above the limit of {MAX_URL_LENGTH}"),
    ],
    ids=["metadata-address", "unresolvable", "2-MB"],
)
def test_a_url_that_can_never_be_fetched_is_422_up_front(jobs_api: JobsApi, url: str, message: str):
    answer = jobs_api.client.post("/jobs", json={"url": url})
    assert answer.status_code == 422
    [error] = answer.json()["detail"]
    assert error["loc"] == ["body", "url"] and message in error["msg"], error
    assert len(answer.content) < 2000  # a huge URL is not sent back


def test_a_private_address_is_422_without_an_allowlist(jobs_api: JobsApi):
    from dataclasses import replace

    from api_poller.jobs_api import dependencies

    jobs_api.client.app.dependency_overrides[dependencies.get_settings] = lambda: replace(
        jobs_api.settings, url_allowlist=""
    )
    answer = jobs_api.client.post("/jobs", json={"url": PARTNER})
    assert answer.status_code == 422
    [error] = answer.json()["detail"]
    assert "resolves to non-public address 127.0.0.1" in error["msg"]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (b'{"url": ', None, "JSON decode error"),
        (b"[]", None, "valid dictionary"),
        ({}, "url", "Field required"),
        ({"url": "ftp://partner.example/payload"}, "url", "must use http or https"),
        ({"url": "https://"}, "url", "has no host"),
        ({"url": 42}, "url", "url must be a string"),
        ({"url": PARTNER, "concurrency": "25"}, "concurrency", "concurrency must be an integer"),
        ({"url": PARTNER, "fetch_tasks": 0}, "fetch_tasks", "fetch_tasks must be between 1 and 256"),
        ({"url": PARTNER, "pages": 3}, "pages", "Extra inputs"),
    ],
    ids=["malformed", "not-an-object", "no-url", "ftp-url", "no-host", "url-type", "type", "range", "extra"],
)
def test_a_bad_job_request_is_422_naming_the_field(jobs_api: JobsApi, body, field, message):
    if isinstance(body, bytes):
        answer = jobs_api.client.post("/jobs", content=body, headers={"Content-Type": "application/json"})
    else:
        answer = jobs_api.client.post("/jobs", json=body)
    assert answer.status_code == 422, answer.json()
    errors = answer.json()["detail"]
    assert any(message in error["msg"] for error in errors), errors
    if field:
        error = next(error for error in errors if error["loc"] == ["body", field])
        assert message in error["msg"]


def test_a_cookie_authenticated_post_must_be_json(jobs_api: JobsApi):
    """Without a bearer token (the UI's cookie), a cross-site form cannot start or redrive jobs."""
    for path in ("/jobs", "/jobs/some-job/replay", "/jobs/some-job/redrive", "/jobs/some-job/rerun-failed"):
        headers = {"Content-Type": "text/plain", "Authorization": ""}  # the cookie, no token
        answer = jobs_api.client.post(path, content=b"url=x", headers=headers)
        assert answer.status_code == 415, (path, answer.json())


# -- reading jobs -----------------------------------------------------------------------------------


def test_get_jobs_lists_recent_jobs_newest_first(jobs_api: JobsApi):
    first, second = start(jobs_api), start(jobs_api)
    listed = [job["JobId"] for job in jobs_api.client.get("/jobs").json()["Jobs"]]
    assert listed.index(second) < listed.index(first)
    assert len(jobs_api.client.get("/jobs?limit=1").json()["Jobs"]) == 1
    assert jobs_api.client.get("/jobs?limit=0").status_code == 422


def test_a_job_before_planning_has_no_pages_yet(jobs_api: JobsApi):
    job_id = start(jobs_api)
    progress = jobs_api.client.get(job_path(job_id)).json()
    assert (progress["JobId"], progress["State"], progress["Total"], progress["TriggeredBy"]) == (
        job_id,
        "queued",
        0,
        USER,
    )
    assert progress["RunPath"] == f"/dags/api_poller/runs/{quote(job_id, safe='')}"
    assert jobs_api.client.get(job_path(job_id, "/tasks")).json()["Pages"] == []


def test_tasks_lists_the_planned_pages_with_their_states(jobs_api: JobsApi):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    job_id = start(jobs_api)
    plan = [{"batch": [{"page": 0, "start_at": 0, "count": 10}, {"page": 1, "start_at": 10, "count": 10}]}]
    status = {"page-000001": {"state": "FailedToComplete", "at": 5.0, "reason": "record 0 has no 'id'"}}
    with create_session() as session:
        for task_id, key, value in [
            (names.PLAN_TASK, names.RETURN_VALUE_KEY, plan),
            (names.PLAN_TASK, names.TOTAL_PAGES_KEY, 2),
            (names.CONSUME_TASK_ID, names.STATUS_KEY, status),
        ]:
            XComModel.set(key, value, dag_id="api_poller", task_id=task_id, run_id=job_id, session=session)
    pages = jobs_api.client.get(job_path(job_id, "/tasks")).json()
    assert pages["Total"] == 2
    assert [(page["PageId"], page["State"], page["Reason"]) for page in pages["Pages"]] == [
        ("page-000000", "Pending", None),
        ("page-000001", "FailedToComplete", "record 0 has no 'id'"),
    ]
    progress = jobs_api.client.get(job_path(job_id)).json()
    assert (progress["Total"], progress["FailedToComplete"]) == (2, 1)


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("GET", ""),
        ("GET", "/tasks"),
        ("GET", "/tasks/page-000000"),
        ("GET", "/timeline"),
        ("POST", "/replay"),
        ("POST", "/redrive"),
        ("POST", "/rerun-failed"),
    ],
)
def test_an_unknown_job_is_404(jobs_api: JobsApi, method: str, suffix: str):
    answer = jobs_api.client.request(method, job_path("no-such-job", suffix))
    assert answer.status_code == 404
    assert answer.json() == {
        "detail": "Job 'no-such-job' not found: no poller DAG (api_poller or api_poller__<source>) "
        "has a run with that id"
    }


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("GET", ""),
        ("GET", "/tasks"),
        ("GET", "/tasks/page-000000"),
        ("GET", "/timeline"),
        ("POST", "/replay"),
        ("POST", "/redrive"),
        ("POST", "/rerun-failed"),
    ],
)
@pytest.mark.parametrize(
    ("job_id", "message"),
    [
        ("\x00", "must not contain control characters"),
        ("manual__x\nX-Injected: 1", "must not contain control characters"),
        ("j" * 251, "at most 250"),
    ],
    ids=["nul", "newline", "too-long"],
)
def test_a_job_id_no_run_can_have_is_422_with_a_clear_message(jobs_api, method, suffix, job_id, message):
    answer = jobs_api.client.request(method, job_path(job_id, suffix))
    assert answer.status_code == 422
    assert message in answer.json()["detail"]


def test_the_openapi_document_lists_the_routes(jobs_api: JobsApi):
    paths = jobs_api.client.get("/openapi.json").json()["paths"]
    assert set(paths) == {
        "/jobs",
        "/jobs/{job_id}",
        "/jobs/{job_id}/tasks",
        "/jobs/{job_id}/timeline",
        "/jobs/{job_id}/replay",
        "/jobs/{job_id}/redrive",
        "/jobs/{job_id}/rerun-failed",
        "/jobs/{job_id}/tasks/{page_id}",
    }


def test_the_progress_page_is_served_to_a_logged_in_user(jobs_api: JobsApi):
    answer = jobs_api.client.get("/")
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    assert '"dagId": "api_poller"' in answer.text


# -- redriving --------------------------------------------------------------------------------------


def test_redrive_moves_the_jobs_dead_letters_back_and_reruns_its_processing(jobs_api: JobsApi):
    job_id = start(jobs_api)
    finish_with_failed_processing(job_id)
    dead_letter(jobs_api, job_id, "page-000001")
    dead_letter(jobs_api, "manual__another-job", "page-000004")
    answer = jobs_api.client.post(job_path(job_id, "/redrive"))
    assert answer.status_code == 200, answer.json()
    # The consumer, the report and end_of_job (the job's outcome is decided, and told, again).
    assert answer.json() == {"JobId": job_id, "Moved": ["page-000001"], "Failed": {}, "ClearedTasks": 3}
    assert (queue_depth(jobs_api, jobs_api.queue), queue_depth(jobs_api, jobs_api.dead_letters)) == (1, 1)
    run, states = stored_run(job_id)
    assert run.state == "queued"  # the scheduler picks it up again
    assert states[names.CONSUME_TASK_ID] is None and states[names.REPORT_TASK] is None
    assert states[names.END_OF_JOB_TASK] is None
    assert states[names.PLAN_TASK] is None  # never ran here, and not cleared either: only downstream


def test_redrive_without_dead_letters_leaves_the_run_alone(jobs_api: JobsApi):
    job_id = start(jobs_api)
    finish_with_failed_processing(job_id)
    answer = jobs_api.client.post(job_path(job_id, "/redrive"))
    assert answer.json() == {"JobId": job_id, "Moved": [], "Failed": {}, "ClearedTasks": 0}
    run, states = stored_run(job_id)
    assert run.state == "failed" and states[names.CONSUME_TASK_ID] == "failed"


def test_a_job_still_running_is_not_redriven(jobs_api: JobsApi):
    job_id = start(jobs_api)
    dead_letter(jobs_api, job_id, "page-000001")
    answer = jobs_api.client.post(job_path(job_id, "/redrive"))
    assert answer.status_code == 409
    assert "redrive its dead letters once it has finished" in answer.json()["detail"]
    assert queue_depth(jobs_api, jobs_api.dead_letters) == 1


# -- source jobs (api_poller__<name>) ---------------------------------------------------------------


def start_demo(api: JobsApi, body: dict | None = None) -> str:
    answer = api.client.post("/jobs", json=body or {"source": "demo"})
    assert answer.status_code == 201, answer.json()
    return answer.json()["jobId"]


def stored_dag_id(job_id: str) -> str:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return session.scalar(select(DagRun.dag_id).where(DagRun.run_id == job_id))


def test_post_jobs_with_a_source_starts_a_run_of_the_sources_dag(jobs_api: JobsApi):
    body = {"source": "demo", "params": {"status": "open"}, "full_refresh": True, "concurrency": 4}
    answer = jobs_api.client.post("/jobs", json=body)
    assert answer.status_code == 201, answer.json()
    job_id = answer.json()["jobId"]
    assert stored_dag_id(job_id) == DEMO_DAG_ID
    run, _ = stored_run(job_id)
    assert (run.run_type, run.triggering_user_name) == ("manual", USER)
    assert run.conf == {"params": {"status": "open"}, "full_refresh": True, "concurrency": 4}
    assert ("POST", "RUN", DEMO_DAG_ID) in jobs_api.allowed.asked  # checked against the source's DAG


def test_an_unknown_source_is_404_naming_it(jobs_api: JobsApi):
    answer = jobs_api.client.post("/jobs", json={"source": "no_such_source"})
    assert answer.status_code == 404
    assert answer.json()["detail"].startswith(
        "Source 'no_such_source' not found: no DAG api_poller__no_such_source is loaded"
    )


@pytest.mark.parametrize(
    ("body", "loc", "message"),
    [
        ({"source": "Demo"}, ["body", "source"], "String should match pattern"),
        ({"source": 7}, ["body", "source"], "valid string"),
        ({"source": "demo", "url": PARTNER}, ["body"], "a source job takes no 'url'"),
        ({"source": "demo", "pages": 3}, ["body", "pages"], "Extra inputs are not permitted"),
        ({"source": "demo", "params": {"host": "evil.example"}}, ["body", "params", "host"], "does not let"),
        ({"source": "demo", "params": ["status"]}, ["body", "params"], "valid dictionary"),
        ({"source": "demo", "params": {"status": [1]}}, ["body", "params", "status"], "a string, a number"),
        ({"source": "demo", "full_refresh": "yes"}, ["body", "full_refresh"], "valid boolean"),
        ({"source": "demo", "concurrency": 0}, ["body", "concurrency"], "concurrency must be between 1"),
        ({"source": "demo", "fetch_tasks": "2"}, ["body", "fetch_tasks"], "fetch_tasks must be an integer"),
    ],
    ids=[
        "not-a-name",
        "name-type",
        "url",
        "unknown-field",
        "not-overridable",
        "params-type",
        "param-value",
        "full-refresh-type",
        "range",
        "int-type",
    ],
)
def test_a_bad_source_job_request_is_422_naming_the_field(jobs_api: JobsApi, body, loc, message):
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    def demo_runs() -> int:
        with create_session() as session:
            return session.scalar(select(func.count()).where(DagRun.dag_id == DEMO_DAG_ID))

    before = demo_runs()
    answer = jobs_api.client.post("/jobs", json=body)
    assert answer.status_code == 422, answer.json()
    errors = answer.json()["detail"]
    assert any(error["loc"] == loc and message in error["msg"] for error in errors), errors
    assert demo_runs() == before  # nothing started


def test_the_not_overridable_error_lists_what_the_source_allows(jobs_api: JobsApi):
    answer = jobs_api.client.post("/jobs", json={"source": "demo", "params": {"cursor": "x"}})
    [error] = answer.json()["detail"]
    assert error["msg"] == (
        "Value error, source 'demo' does not let a trigger set 'cursor' (its overridable_params: status)"
    )


def test_jobs_of_every_poller_dag_are_listed_with_their_source(jobs_api: JobsApi):
    seed_job, demo_job = start(jobs_api), start_demo(jobs_api)
    listed = {job["JobId"]: job for job in jobs_api.client.get("/jobs?limit=100").json()["Jobs"]}
    assert (listed[seed_job]["Source"], listed[seed_job]["DagId"]) == (None, "api_poller")
    assert (listed[demo_job]["Source"], listed[demo_job]["DagId"]) == ("demo", DEMO_DAG_ID)
    assert listed[demo_job]["RunPath"] == f"/dags/{DEMO_DAG_ID}/runs/{quote(demo_job, safe='')}"


def test_a_source_job_is_found_by_its_id_alone(jobs_api: JobsApi):
    job_id = start_demo(jobs_api)
    progress = jobs_api.client.get(job_path(job_id))
    assert progress.status_code == 200, progress.json()
    assert (progress.json()["Source"], progress.json()["State"]) == ("demo", "queued")
    assert jobs_api.client.get(job_path(job_id, "/tasks")).json()["Pages"] == []
    replay = jobs_api.client.post(job_path(job_id, "/replay"))
    assert replay.status_code == 201, replay.json()
    assert stored_dag_id(replay.json()["jobId"]) == DEMO_DAG_ID


def test_a_walk_in_progress_has_an_open_total_and_its_pages_listed(jobs_api: JobsApi):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    job_id = start_demo(jobs_api)
    page_one = {"url": "http://127.0.0.1:9/cursor/items", "params": [["status", "all"]], "page": 1}
    plan = [{"mode": "walk", "base_request": page_one, "batch": [page_one], "concurrency": 1}]
    status = {
        "page-000001": {"state": "SuccessfullyCompleted", "at": 5.0, "records": 10},
        "page-000002": {"state": "Enqueued", "at": 6.0},
        "page-000003": {"state": "Started", "at": 7.0},
    }
    with create_session() as session:
        for task_id, key, value in [
            (names.PLAN_TASK, names.RETURN_VALUE_KEY, plan),
            (names.PLAN_TASK, names.TOTAL_PAGES_KEY, None),  # a walk: the total is unknown
            (names.FETCH_TASK, names.STATUS_KEY, status),
        ]:
            XComModel.set(key, value, dag_id=DEMO_DAG_ID, task_id=task_id, run_id=job_id, session=session)
    progress = jobs_api.client.get(job_path(job_id)).json()
    assert (progress["Total"], progress["TotalKnown"], progress["SuccessfullyCompleted"]) == (3, False, 1)
    pages = jobs_api.client.get(job_path(job_id, "/tasks")).json()["Pages"]
    assert [(page["PageId"], page["State"], page["StartAt"]) for page in pages] == [
        ("page-000001", "SuccessfullyCompleted", None),
        ("page-000002", "Enqueued", None),
        ("page-000003", "Started", None),
    ]
    seed_progress = jobs_api.client.get(job_path(start(jobs_api))).json()
    assert seed_progress["TotalKnown"] is None  # a planned job's document is the seed's


def test_a_user_sees_and_starts_only_jobs_of_dags_they_may_use(jobs_api: JobsApi):
    seed_job, demo_job = start(jobs_api), start_demo(jobs_api)
    jobs_api.allowed.readable = jobs_api.allowed.startable = {"api_poller"}
    listed = [job["JobId"] for job in jobs_api.client.get("/jobs?limit=100").json()["Jobs"]]
    assert seed_job in listed and demo_job not in listed
    for method, suffix in [
        ("GET", ""),
        ("GET", "/tasks"),
        ("POST", "/replay"),
        ("POST", "/redrive"),
        ("POST", "/rerun-failed"),
    ]:
        assert jobs_api.client.request(method, job_path(demo_job, suffix)).status_code == 403, suffix
    assert jobs_api.client.post("/jobs", json={"source": "demo"}).status_code == 403
    assert jobs_api.client.get(job_path(seed_job)).status_code == 200
    jobs_api.allowed.readable = None  # may read the source's runs, still not start them
    assert jobs_api.client.get(job_path(demo_job)).status_code == 200
    assert jobs_api.client.post(job_path(demo_job, "/replay")).status_code == 403


def test_a_job_id_two_dags_share_is_409_until_dag_id_chooses(jobs_api: JobsApi):
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.utils.session import create_session
    from airflow.utils.types import DagRunTriggeredByType

    shared = start(jobs_api)
    with create_session() as session:  # as two sources' scheduled runs at the same time would be
        trigger_dag(DEMO_DAG_ID, run_id=shared, triggered_by=DagRunTriggeredByType.TEST, session=session)
    answer = jobs_api.client.get(job_path(shared))
    assert answer.status_code == 409
    assert "add ?dag_id=" in answer.json()["detail"] and DEMO_DAG_ID in answer.json()["detail"]
    chosen = jobs_api.client.get(job_path(shared), params={"dag_id": DEMO_DAG_ID})
    assert (chosen.status_code, chosen.json()["Source"]) == (200, "demo")
    assert jobs_api.client.get(job_path(shared), params={"dag_id": "other_dag"}).status_code == 422
