"""The job API and progress page (plugins/api_poller_plugin.py) on a real, running Airflow.

One Airflow (api-server, scheduler, dag-processor, triggerer on PostgreSQL), moto and the
simulator serve the whole module. Four jobs run at once: one started through ``POST
/api-poller/jobs``, a replay of it, one through Airflow's REST API, and one (REST API too) that
fails at planning and has its status purged by a test. The tests read them back through the job
API and through the progress page in headless Chromium (Debian's ``chromium`` package, driven over
the DevTools protocol on a pipe: no extra Python package, no port).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import itertools
import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from api_poller_dev.local_airflow import FINAL_RUN_STATES, AirflowServer, postgres_reachable

from api_poller.core.keys import safe_job_id
from api_poller.jobs_api.page import NAV_NAME, PAGE_ROUTE, run_path
from tests.helpers import PROCESSED_BUCKET, RAW_BUCKET, ROOT, real_airflow_stack

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not postgres_reachable(), reason="PostgreSQL is not reachable on 127.0.0.1:5432"),
]

DAG_ID = "api_poller"
API = "/api-poller"
RECORDS = 2000
PAGE_SIZE = 100  # the simulator's maxRecordsPerPage
PAGES = RECORDS // PAGE_SIZE
SEED_KEYS = ["Started", "PayloadSaved", "Enqueued", "SuccessfullyCompleted", "FailedToComplete", "Total"]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


# -- HTTP -----------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


def call(
    airflow: AirflowServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = None,
    auth: bool = True,
    raw: bytes | None = None,
) -> Answer:
    """Any status, JSON body decoded; ``auth=False`` sends no credentials at all."""
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if auth:
        headers["Authorization"] = f"Bearer {token or airflow.token()}"
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(airflow.base_url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, payload, answer_headers = response.status, response.read(), response.headers
    except urllib.error.HTTPError as error:
        status, payload, answer_headers = error.code, error.read(), error.headers
    try:
        decoded = json.loads(payload) if payload else None
    except ValueError:
        decoded = payload.decode(errors="replace")
    return Answer(status, decoded, {k.lower(): v for k, v in answer_headers.items()})


def job_path(job_id: str, suffix: str = "") -> str:
    return f"{API}/jobs/{urllib.parse.quote(job_id, safe='')}{suffix}"


# -- the stack and the jobs -----------------------------------------------------------------------


@dataclass
class Stack:
    airflow: AirflowServer
    partner_url: str
    s3: Any  # a boto3 client on moto


@pytest.fixture(scope="module")
def stack():
    """moto, the simulator and a real Airflow (LocalExecutor on PostgreSQL), all on 127.0.0.1."""
    simulator_args = [f"--total-records={RECORDS}", "--latency-ms=0-200", "--error-rate=0.1", "--seed=7"]
    # A finished job whose status is gone has expired at once (see the 410 test).
    with real_airflow_stack("jobs-api", simulator_args, {"API_POLLER_RETENTION_DAYS": "0"}) as (
        airflow,
        partner_url,
        aws,
    ):
        yield Stack(airflow, partner_url, aws.s3)


@dataclass
class Job:
    id: str
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def final(self) -> dict[str, Any]:
        return self.history[-1]


@dataclass
class Jobs:
    by_job_api: Job
    by_rest_api: Job
    replay: Job
    to_expire: Job  # failed at planning; its status is purged by a test
    created: Answer  # the POST /api-poller/jobs answer
    replayed: Answer  # the POST /api-poller/jobs/{id}/replay answer

    def all(self) -> list[Job]:
        return [self.by_job_api, self.by_rest_api, self.replay]


@pytest.fixture(scope="module")
def jobs(stack: Stack) -> Jobs:
    """Four jobs run together, each polled through GET /api-poller/jobs/{id} until it is done."""
    airflow = stack.airflow
    created = call(airflow, "POST", f"{API}/jobs", {"url": stack.partner_url, "fetch_tasks": 2})
    assert created.status == 201, created.body
    by_rest_api = airflow.trigger(DAG_ID, {"url": stack.partner_url, "fetch_tasks": 3})
    replayed = call(airflow, "POST", job_path(created.body["jobId"], "/replay"))
    assert replayed.status == 201, replayed.body
    # A job whose plan fails at once (the partner answers 404): a cheap job for the 410 test.
    to_expire = airflow.trigger(DAG_ID, {"url": stack.partner_url.replace("/payload", "/no-such-endpoint")})
    running = [
        Job(created.body["jobId"]),
        Job(by_rest_api),
        Job(replayed.body["jobId"]),
        Job(to_expire),
    ]
    deadline = time.monotonic() + 360
    while any(not job.history or job.final["State"] not in FINAL_RUN_STATES for job in running):
        assert time.monotonic() < deadline, {job.id: job.history[-1:] for job in running}
        for job in running:
            if not job.history or job.final["State"] not in FINAL_RUN_STATES:
                answer = call(airflow, "GET", job_path(job.id))
                assert answer.status == 200, answer.body
                job.history.append(answer.body)
        time.sleep(1)
    return Jobs(*running, created=created, replayed=replayed)


# -- starting jobs --------------------------------------------------------------------------------


def test_post_jobs_answers_with_the_aws_samples_event_id(jobs: Jobs):
    answer = jobs.created
    assert answer.body["jobId"] == answer.body["Entries"][0]["EventId"] == jobs.by_job_api.id
    assert answer.body["FailedEntryCount"] == 0
    assert answer.headers["location"] == job_path(jobs.by_job_api.id)
    assert jobs.by_job_api.id.startswith("manual__")


def test_a_job_is_a_manual_dag_run_triggered_by_the_authenticated_user(stack: Stack, jobs: Jobs):
    run = stack.airflow.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{jobs.by_job_api.id}")
    assert run["run_type"] == "manual"
    assert run["triggering_user_name"] == "admin"
    assert run["conf"] == {"url": stack.partner_url, "fetch_tasks": 2}


@pytest.mark.parametrize("job", ["by_job_api", "by_rest_api", "replay"])
def test_progress_only_moves_forward_and_ends_complete(jobs: Jobs, job: str):
    history = getattr(jobs, job).history
    assert all(set(SEED_KEYS) <= set(progress) for progress in history)
    # A page only moves forward, so the pages at or past each lifecycle step never decrease
    # (FailedToComplete counts as past every step, like SuccessfullyCompleted).
    at_or_past = {step: SEED_KEYS[index:5] for index, step in enumerate(SEED_KEYS[:4])}
    for earlier, later in itertools.pairwise(history):
        for step, states in at_or_past.items():
            assert sum(later[k] for k in states) >= sum(earlier[k] for k in states), (step, earlier, later)
        if earlier["Total"]:
            assert later["Total"] == earlier["Total"]
    final = history[-1]
    assert final["State"] == "success", final
    assert final["SuccessfullyCompleted"] == final["Total"] == PAGES
    assert final["Started"] == final["PayloadSaved"] == final["Enqueued"] == final["FailedToComplete"] == 0


def test_progress_was_visible_while_the_jobs_ran(jobs: Jobs):
    # Across the three jobs, the poller saw some intermediate state, not only the end result.
    seen = [p for job in jobs.all() for p in job.history if p["State"] == "running" and p["Total"]]
    assert any(p["SuccessfullyCompleted"] < p["Total"] for p in seen), "no intermediate progress observed"


def test_tasks_lists_every_page_with_its_state_and_locations(stack: Stack, jobs: Jobs):
    job = jobs.by_job_api
    answer = call(stack.airflow, "GET", job_path(job.id, "/tasks"))
    assert answer.status == 200, answer.body
    pages = answer.body["Pages"]
    assert answer.body["Total"] == PAGES
    assert [page["PageId"] for page in pages] == [f"page-{index:06d}" for index in range(PAGES)]
    assert {page["State"] for page in pages} == {"SuccessfullyCompleted"}
    assert sorted({page["FetchMapIndex"] for page in pages}) == [0, 1]  # fetch_tasks=2
    folder = f"jobs/{safe_job_id(job.id)}"
    for page in pages:
        key = f"{folder}/records/{page['PageId']}.ndjson"
        assert page["ProcessedLocation"] == f"s3://{PROCESSED_BUCKET}/{key}"
        stack.s3.head_object(Bucket=PROCESSED_BUCKET, Key=key)  # it is really there
        assert page["RawLocation"] == f"s3://{RAW_BUCKET}/{folder}/raw/{page['PageId']}.json"
        assert page["Records"] in (PAGE_SIZE, None)  # None: processed by another job's consumer
        assert page["Attempts"] >= 1
        assert page["Reason"] is None
    # 10% of requests fail: a page that needed retries says why (over all jobs, some did).
    every_page = [
        page
        for other in jobs.all()
        for page in call(stack.airflow, "GET", job_path(other.id, "/tasks")).body["Pages"]
    ]
    retried = [page for page in every_page if page["Attempts"] > 1]
    assert retried and all(page["Error"] for page in retried)


def test_get_jobs_lists_recent_jobs_newest_first(stack: Stack, jobs: Jobs):
    listed = call(stack.airflow, "GET", f"{API}/jobs").body["Jobs"]
    ids = [job["JobId"] for job in listed]
    assert {job.id for job in jobs.all()} <= set(ids)
    assert ids.index(jobs.replay.id) < ids.index(jobs.by_job_api.id)  # newest first
    for job in jobs.all():
        entry = listed[ids.index(job.id)]
        assert {k: entry[k] for k in [*SEED_KEYS, "State"]} == {
            k: job.final[k] for k in [*SEED_KEYS, "State"]
        }
        assert (entry["DagId"], entry["Source"]) == (DAG_ID, None)  # a job of the free-URL DAG
    assert len(call(stack.airflow, "GET", f"{API}/jobs?limit=1").body["Jobs"]) == 1


def test_replay_starts_a_new_job_with_the_same_conf(stack: Stack, jobs: Jobs):
    answer = jobs.replayed.body
    assert answer["jobId"] == answer["Entries"][0]["EventId"] == jobs.replay.id != jobs.by_job_api.id
    assert answer["ReplayOf"] == jobs.by_job_api.id
    assert jobs.replay.final["Conf"] == jobs.by_job_api.final["Conf"]
    run = stack.airflow.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{jobs.replay.id}")
    assert run["note"] == f"Replay of job {jobs.by_job_api.id}"


def test_a_job_is_readable_by_its_raw_run_id_as_in_the_seeds_curl(stack: Stack, jobs: Jobs):
    # The seed does `curl $API/jobs/$EVENT_ID` with the id unencoded (":" and "+" in the path).
    answer = call(stack.airflow, "GET", f"{API}/jobs/{jobs.by_rest_api.id}")
    assert answer.status == 200 and answer.body["JobId"] == jobs.by_rest_api.id


def test_the_documented_rerun_of_failed_pages_clears_their_batch_and_what_follows(stack: Stack, jobs: Jobs):
    """docs/jobs-api.md: clear the failed pages' fetch_pages map indexes with downstream (dry run here)."""
    body = {
        "dag_run_id": jobs.by_job_api.id,
        "task_ids": [["fetch_pages", 1]],
        "include_downstream": True,
        "only_failed": False,
        "reset_dag_runs": True,
        "dry_run": True,
    }
    answer = stack.airflow.request("POST", f"/api/v2/dags/{DAG_ID}/clearTaskInstances", body)
    cleared = {(ti["task_id"], ti["map_index"]) for ti in answer["task_instances"]}
    assert {("fetch_pages", 1), ("process.consume_page_messages", -1)} <= cleared
    assert ("report", -1) in cleared
    assert not cleared & {("fetch_pages", 0), ("plan", -1), ("prepare_resources", -1)}
    assert {ti["dag_run_id"] for ti in answer["task_instances"]} == {jobs.by_job_api.id}


# -- errors ---------------------------------------------------------------------------------------


ENDPOINTS = [
    ("POST", f"{API}/jobs"),
    ("GET", f"{API}/jobs"),
    ("GET", f"{API}/jobs/some-job"),
    ("GET", f"{API}/jobs/some-job/tasks"),
    ("POST", f"{API}/jobs/some-job/replay"),
    ("POST", f"{API}/jobs/some-job/redrive"),
    ("GET", f"{API}/openapi.json"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_every_endpoint_needs_a_valid_token(stack: Stack, method: str, path: str):
    body = {"url": stack.partner_url} if method == "POST" else None
    missing = call(stack.airflow, method, path, body, auth=False)
    garbage = call(stack.airflow, method, path, body, token="not-a-jwt")
    for answer in (missing, garbage):
        assert answer.status == 401, answer.body
        assert answer.headers["www-authenticate"] == "Bearer"


def test_the_progress_page_sends_visitors_without_a_session_to_the_login(stack: Stack):
    request = urllib.request.Request(f"{stack.airflow.base_url}{API}/")

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.build_opener(NoRedirect).open(request, timeout=30)
    assert raised.value.code == 307
    assert raised.value.headers["location"].startswith("/auth/login?next=")


def test_a_job_id_with_a_nul_is_422_not_a_database_error(stack: Stack):
    # PostgreSQL refuses NUL in strings: the id is refused before it reaches the database.
    answer = call(stack.airflow, "GET", f"{API}/jobs/%00")
    assert answer.status == 422, answer.body
    assert "must not contain control characters" in answer.body["detail"]


def test_a_url_the_ssrf_guard_refuses_is_422_before_any_run_exists(stack: Stack):
    before = stack.airflow.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns?limit=1")["total_entries"]
    answer = call(stack.airflow, "POST", f"{API}/jobs", {"url": "http://169.254.169.254/latest/meta-data"})
    assert answer.status == 422, answer.body
    assert "not in API_POLLER_URL_ALLOWLIST" in answer.body["detail"][0]["msg"]
    assert stack.airflow.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns?limit=1")["total_entries"] == before


def test_a_job_of_an_unknown_source_is_404_with_airflows_own_authorization(stack: Stack):
    answer = call(stack.airflow, "POST", f"{API}/jobs", {"source": "no_such_source"})
    assert answer.status == 404, answer.body
    assert answer.body["detail"].startswith("Source 'no_such_source' not found")


# -- the progress page in a browser ---------------------------------------------------------------


class HeadlessChromium:
    """Debian's Chromium, driven over the DevTools protocol on a pipe (no port, no extra package)."""

    def __init__(self, executable: str, profile: Path) -> None:
        # The DevTools pipe is fds 3 (commands in) and 4 (answers out) of the browser; the ends
        # handed over are moved above them first, so that the redirections cannot clobber them
        # (bash, not sh: dash only redirects single-digit fds).
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()
        child_in = fcntl.fcntl(to_browser_read, fcntl.F_DUPFD_CLOEXEC, 10)
        child_out = fcntl.fcntl(from_browser_write, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_browser_read)
        os.close(from_browser_write)
        flags = [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--no-default-browser-check", "--hide-scrollbars", "--mute-audio",
            f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank",
        ]  # fmt: skip
        self.log = profile / "chromium.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                ["bash", "-c", f'exec "$0" "$@" 3<&{child_in} 4>&{child_out}', executable, *flags],
                pass_fds=(child_in, child_out),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its helper processes share its group, stopped with it
            )
        os.close(child_in)
        os.close(child_out)
        self._answers: dict[int, queue.Queue] = {}
        self._next_id = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        try:
            target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
                "sessionId"
            ]
        except Exception as exc:
            self.close()
            raise RuntimeError(
                f"Chromium did not start: {self.log.read_text(errors='replace')[-2000:]}"
            ) from exc

    def _read(self) -> None:
        buffer = b""
        while chunk := os.read(self._from_browser, 1 << 16):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for message in messages:
                decoded = json.loads(message)
                if "id" in decoded and decoded["id"] in self._answers:
                    self._answers[decoded["id"]].put(decoded)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        with self._lock:
            self._next_id += 1
            message_id = self._next_id
            self._answers[message_id] = queue.Queue()
        message = {"id": message_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        answer = self._answers[message_id].get(timeout=60)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    def page(self, method: str, params: dict | None = None) -> dict:
        return self.send(method, params, self.session)

    def evaluate(self, expression: str) -> Any:
        result = self.page("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        while not (value := self.evaluate(expression)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression} still falsy after {timeout:.0f}s")
            time.sleep(0.2)
        return value

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = self.page("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        with contextlib.suppress(OSError):  # the browser may close before answering: do not wait
            os.write(self._to_browser, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


@pytest.fixture
def browser(stack: Stack):
    """Chromium with the session cookie Airflow's login page sets (``_token``: the user's JWT)."""
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    profile = Path(tempfile.mkdtemp(prefix="api-poller-chromium-"))
    chromium = HeadlessChromium(CHROMIUM, profile)
    try:
        chromium.page("Network.enable")
        chromium.page(
            "Network.setCookie",
            {"name": "_token", "value": stack.airflow.token(), "url": stack.airflow.base_url + "/"},
        )
        chromium.page(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1280, "height": 640, "deviceScaleFactor": 1, "mobile": False},
        )
        yield chromium
    finally:
        chromium.close()
        shutil.rmtree(profile, ignore_errors=True)


SHOWN_JOBS = """JSON.stringify([...document.querySelectorAll("tr[data-job-id]")].map((row) => ({
  id: row.dataset.jobId,
  state: row.dataset.state,
  link: row.querySelector("td.job a").getAttribute("href"),
  counts: Object.fromEntries([...row.querySelectorAll("[data-field]")].map(
    (cell) => [cell.dataset.field, Number(cell.textContent)])),
})))"""


def test_the_progress_page_shows_each_jobs_counts(stack: Stack, jobs: Jobs, browser: HeadlessChromium):
    browser.page("Page.navigate", {"url": f"{stack.airflow.base_url}{API}/"})
    browser.wait_for("document.body?.dataset.loaded === 'true'")
    browser.screenshot(ARTIFACTS / "progress-page.png")
    shown = {row["id"]: row for row in json.loads(browser.evaluate(SHOWN_JOBS))}
    for job in jobs.all():
        row = shown[job.id]
        assert row["state"] == "success"
        assert row["counts"] == {key: job.final[key] for key in SEED_KEYS}
        assert row["link"] == run_path(DAG_ID, job.id)


def test_the_progress_page_is_in_airflows_navigation(stack: Stack, jobs: Jobs, browser: HeadlessChromium):
    plugins = stack.airflow.request("GET", "/api/v2/plugins")["plugins"]
    views = [view for plugin in plugins for view in plugin["external_views"]]
    assert any(view["url_route"] == PAGE_ROUTE and view["href"] == f"{API}/" for view in views), views
    # Airflow's UI shows the page in an iframe; the run link there opens the run in the UI.
    browser.page("Page.navigate", {"url": f"{stack.airflow.base_url}/plugin/{PAGE_ROUTE}"})
    frame = f"document.querySelector('iframe[title=\"{NAV_NAME}\"]')"
    browser.wait_for(f"{frame}?.contentDocument?.body?.dataset.loaded === 'true'", timeout=90)
    browser.wait_for(f"document.body?.innerText.includes('{NAV_NAME}')")  # the navigation entry
    browser.screenshot(ARTIFACTS / "progress-page-in-airflow.png")
    row = f"{frame}.contentDocument.querySelector('tr[data-job-id=\"{jobs.by_rest_api.id}\"] td.job a')"
    browser.evaluate(f"{row}.click()")
    expected = run_path(DAG_ID, jobs.by_rest_api.id)
    assert browser.wait_for(f"location.pathname === '{expected}' && location.pathname") == expected


def test_the_progress_page_refreshes_every_2_s_while_a_job_runs(stack: Stack, browser: HeadlessChromium):
    started = call(stack.airflow, "POST", f"{API}/jobs", {"url": stack.partner_url, "fetch_tasks": 1})
    job_id = started.body["jobId"]
    browser.page("Page.navigate", {"url": f"{stack.airflow.base_url}{API}/"})
    row = f"document.querySelector('tr[data-job-id=\"{job_id}\"]')"
    browser.wait_for(f"{row} !== null && document.body.dataset.loaded === 'true'")
    # While a job is active the page schedules its next refresh 2 s ahead (10 s otherwise) ...
    assert browser.evaluate(f"{row}.dataset.state") in ("queued", "running")
    assert browser.evaluate("document.body.dataset.nextRefreshMs") == "2000"
    # ... and keeps refreshing.
    before = int(browser.evaluate("document.body.dataset.refreshes"))
    browser.wait_for(f"Number(document.body.dataset.refreshes) >= {before + 2}")
    browser.screenshot(ARTIFACTS / "progress-page-running.png")


def test_a_job_whose_status_was_purged_is_410_gone(stack: Stack, jobs: Jobs):
    job = jobs.to_expire
    assert (job.final["State"], job.final["Total"], job.final["Expired"]) == ("failed", 0, None)
    run = f"/api/v2/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(job.id, safe='')}"
    # What the maintenance DAG's purge (`airflow db clean`, table xcom) does to an expired job.
    entries = stack.airflow.request("GET", f"{run}/taskInstances/~/xcomEntries?limit=1000")["xcom_entries"]
    assert entries
    for entry in entries:
        key = urllib.parse.quote(entry["key"], safe="")
        path = f"{run}/taskInstances/{entry['task_id']}/xcomEntries/{key}?map_index={entry['map_index']}"
        stack.airflow.request("DELETE", path)
    for suffix in ("", "/tasks"):
        answer = call(stack.airflow, "GET", job_path(job.id, suffix))
        assert answer.status == 410, answer.body
        assert answer.body["detail"].startswith(f"job {job.id} expired: its status was purged after 0 days")
    [listed] = [
        entry for entry in call(stack.airflow, "GET", f"{API}/jobs").body["Jobs"] if entry["JobId"] == job.id
    ]
    assert listed["Expired"].startswith(f"job {job.id} expired") and listed["Total"] == 0
