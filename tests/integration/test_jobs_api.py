"""The job API and progress page (plugins/api_poller_plugin.py) on a real, running Airflow.

One Airflow (api-server, scheduler, dag-processor, triggerer on PostgreSQL), moto and the
simulator serve the whole module. Six jobs run at once: one started through ``POST
/api-poller/jobs``, a replay of it, one through Airflow's REST API, two (REST API too) that fail at
planning (one has its status purged by a test, the other is shown and replayed on the page), and
one whose partner (a proxy in front of the simulator) breaks two pages, later repaired with the
page's buttons. The tests read them back through the job API and through the progress page in
headless Chromium (Debian's ``chromium`` package, driven over the DevTools protocol on a pipe: no
extra Python package, no port), saving screenshots into ``SCREENSHOTS``.
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
VIEWER = "viewer"  # SimpleAuthManager's read-only role
RECORDS = 2000
PAGE_SIZE = 100  # the simulator's maxRecordsPerPage
PAGES = RECORDS // PAGE_SIZE
SEED_KEYS = ["Started", "PayloadSaved", "Enqueued", "SuccessfullyCompleted", "FailedToComplete", "Total"]
# Where the browser tests save what they saw (gitignored); printed at the end of the module.
SCREENSHOTS = Path(os.environ.get("API_POLLER_SCREENSHOTS") or ROOT / "test-artifacts" / "screenshots")
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
    headers: dict[str, str] | None = None,
) -> Answer:
    """Any status, JSON body decoded; ``auth=False`` sends no credentials at all."""
    headers = {"Content-Type": "application/json", "Accept": "application/json", **(headers or {})}
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
    # A finished job whose status is gone has expired at once (see the 410 test). A read-only
    # user besides the admin: Airflow generates its password into the passwords file.
    extra_env = {
        "API_POLLER_RETENTION_DAYS": "0",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"admin:admin,{VIEWER}:viewer",
    }
    with real_airflow_stack("jobs-api", simulator_args, extra_env) as (
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
    failed_plan: Job  # failed at planning, for the progress page
    failed_pages: Job  # two pages failed: one the partner refused, one dead-lettered
    created: Answer  # the POST /api-poller/jobs answer
    replayed: Answer  # the POST /api-poller/jobs/{id}/replay answer

    def all(self) -> list[Job]:
        return [self.by_job_api, self.by_rest_api, self.replay]


@pytest.fixture(scope="module")
def jobs(stack: Stack, broken_partner: BrokenPartner) -> Jobs:
    """Six jobs run together, each polled through GET /api-poller/jobs/{id} until it is done."""
    airflow = stack.airflow
    created = call(airflow, "POST", f"{API}/jobs", {"url": stack.partner_url, "fetch_tasks": 2})
    assert created.status == 201, created.body
    by_rest_api = airflow.trigger(DAG_ID, {"url": stack.partner_url, "fetch_tasks": 3})
    replayed = call(airflow, "POST", job_path(created.body["jobId"], "/replay"))
    assert replayed.status == 201, replayed.body
    # A job whose plan fails at once (the partner answers 404): a cheap job for the 410 test.
    to_expire = airflow.trigger(DAG_ID, {"url": stack.partner_url.replace("/payload", "/no-such-endpoint")})
    failed_plan = airflow.trigger(DAG_ID, {"url": stack.partner_url.replace("/payload", "/no-such-api")})
    failed_pages = airflow.trigger(DAG_ID, {"url": broken_partner.url, "fetch_tasks": 2})
    running = [
        Job(created.body["jobId"]),
        Job(by_rest_api),
        Job(replayed.body["jobId"]),
        Job(to_expire),
        Job(failed_plan),
        Job(failed_pages),
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

    def screenshot(self, path: Path, selector: str | None = None) -> None:
        """The whole page (beyond the window), or only the element ``selector`` names."""
        path.parent.mkdir(parents=True, exist_ok=True)
        if selector:
            element = f"document.querySelector({json.dumps(selector)}).getBoundingClientRect()"
            area = (
                f"(() => {{ const r = {element}; return {{x: r.left + scrollX, y: r.top + scrollY, "
                "width: r.width, height: r.height}; })()"
            )
        else:
            root = "document.documentElement"
            area = f"({{x: 0, y: 0, width: {root}.scrollWidth, height: {root}.scrollHeight}})"
        clip = json.loads(self.evaluate(f"JSON.stringify({area})"))
        params = {"format": "png", "captureBeyondViewport": True, "clip": {**clip, "scale": 1}}
        path.write_bytes(base64.b64decode(self.page("Page.captureScreenshot", params)["data"]))
        print(f"screenshot: {path}")

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
    browser.screenshot(SCREENSHOTS / "progress-page.png")
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
    browser.screenshot(SCREENSHOTS / "progress-page-in-airflow.png")
    row = f"{frame}.contentDocument.querySelector('tr[data-job-id=\"{jobs.by_rest_api.id}\"] td.job a')"
    browser.evaluate(f"{row}.click()")
    expected = run_path(DAG_ID, jobs.by_rest_api.id)
    assert browser.wait_for(f"location.pathname === '{expected}' && location.pathname") == expected


def test_the_progress_page_refreshes_every_2_s_while_a_job_runs(stack: Stack, browser: HeadlessChromium):
    started = call(stack.airflow, "POST", f"{API}/jobs", {"url": stack.partner_url, "fetch_tasks": 1})
    job_id = started.body["jobId"]
    open_page(browser, stack, {"job": job_id})
    row = f"document.querySelector('tr[data-job-id=\"{job_id}\"]')"
    browser.wait_for(f"{row} !== null && document.body.dataset.loaded === 'true'")
    # While a job is active the page schedules its next refresh 2 s ahead (10 s otherwise) ...
    assert browser.evaluate(f"{row}.dataset.state") in ("queued", "running")
    assert browser.evaluate("document.body.dataset.nextRefreshMs") == "2000"
    # ... and keeps refreshing.
    before = int(browser.evaluate("document.body.dataset.refreshes"))
    browser.wait_for(f"Number(document.body.dataset.refreshes) >= {before + 2}")
    # Its detail: repairs wait until it has finished, a replay does not.
    wait_for_detail(browser, job_id)
    assert action_buttons(browser) == {"rerun-failed": False, "redrive": False, "replay": True}
    browser.screenshot(SCREENSHOTS / "running-job.png")


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


# -- watching a job and acting on it, in the browser ------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def screenshots_listed(request: pytest.FixtureRequest):
    """Say where the screenshots are once the module is done."""
    yield
    if SCREENSHOTS.is_dir():
        shots = ", ".join(sorted(path.name for path in SCREENSHOTS.glob("*.png")))
        # Past pytest's output capture, so it shows without -s.
        with request.config.pluginmanager.get_plugin("capturemanager").global_and_fixture_disabled():
            print(f"\nscreenshots in {SCREENSHOTS}: {shots}")


def open_page(browser: HeadlessChromium, stack: Stack, query: dict[str, str] | None = None) -> None:
    """The progress page (with ``?job=...`` etc.), loaded, its confirmations answered yes and kept."""
    address = f"{stack.airflow.base_url}{API}/" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    browser.page("Page.navigate", {"url": address})
    browser.wait_for("document.body?.dataset.loaded === 'true'")
    browser.evaluate(
        "window.asked = []; window.confirm = (text) => { window.asked.push(text); return true; }"
    )


def wait_for_detail(browser: HeadlessChromium, job_id: str) -> None:
    browser.wait_for(f"document.body.dataset.detail === {json.dumps(job_id)}")


def text_of(browser: HeadlessChromium, selector: str) -> str:
    return browser.evaluate(f"document.querySelector({json.dumps(selector)})?.innerText ?? ''")


def action_buttons(browser: HeadlessChromium) -> dict[str, bool]:
    """The job detail's action buttons, and whether each is enabled."""
    return json.loads(
        browser.evaluate(
            "JSON.stringify(Object.fromEntries([...document.querySelectorAll('#actions button')]"
            ".map((b) => [b.dataset.action, !b.disabled])))"
        )
    )


def press(browser: HeadlessChromium, action: str) -> str:
    """Press an action button, say yes to its question; the result text the page shows."""
    button = f"document.querySelector('#actions button[data-action={json.dumps(action)}]')"
    browser.wait_for(f"{button} !== null && !{button}.disabled")
    browser.evaluate(f"{button}.click()")
    result = f"document.querySelector('#action-result[data-action={json.dumps(action)}]')"
    browser.wait_for(f"{result}?.dataset.done === 'true'", timeout=90)
    assert browser.evaluate("window.asked.length") == 1, "the button did not ask first"
    browser.evaluate("window.asked = []")
    return text_of(browser, "#action-result")


def wait_until_finished(stack: Stack, job_id: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (job := call(stack.airflow, "GET", job_path(job_id)).body)["State"] not in FINAL_RUN_STATES:
        assert time.monotonic() < deadline, job
        time.sleep(1)
    return job


class BrokenPartner:
    """The simulator behind a proxy that breaks pages: HTTP 404 for ``missing`` pages until
    ``healed``, and a first record without its id for ``poisoned`` pages (saved as served, so
    processing fails and the page is dead-lettered). Counts the requests per page."""

    def __init__(self, upstream: str, missing: set[int], poisoned: set[int]) -> None:
        self.upstream, self.missing, self.poisoned = upstream, missing, poisoned
        self.url = ""  # where it serves, once started
        self.healed = False
        self.requests: dict[int, int] = {}
        self._lock = threading.Lock()

    def page(self, start_at: int, count: int) -> tuple[int, bytes]:
        with self._lock:
            self.requests[start_at] = self.requests.get(start_at, 0) + 1
        if start_at in self.missing and not self.healed:
            return 404, b'{"error": "no such page"}'
        status, body = self.upstream_page(start_at, count)
        if status == 200 and start_at in self.poisoned:
            document = json.loads(body)
            document["payload"][0].pop("id")
            body = json.dumps(document).encode()
        return status, body

    def upstream_page(self, start_at: int, count: int = PAGE_SIZE) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(
                f"{self.upstream}?startAt={start_at}&count={count}", timeout=30
            ) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as error:  # the simulator's injected 5xx: retried by the fetch
            return error.code, error.read()

    def good_page(self, start_at: int) -> bytes:
        for _ in range(20):
            status, body = self.upstream_page(start_at)
            if status == 200:
                return body
        raise AssertionError(f"the simulator never served startAt={start_at}")

    def requests_now(self) -> dict[int, int]:
        with self._lock:
            return dict(self.requests)


@contextlib.contextmanager
def broken_partner_server(partner: BrokenPartner):
    """``partner`` on 127.0.0.1; yields its /payload URL."""
    from tests.helpers import QuietHandler, http_server

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
            status, body = partner.page(int(query.get("startAt", 0)), int(query.get("count", PAGE_SIZE)))
            self.reply(status, "application/json", body)

    with http_server(Handler) as port:
        yield f"http://127.0.0.1:{port}/payload"


@dataclass
class FailedPagesJob:
    id: str
    partner: BrokenPartner


MISSING_PAGE, POISONED_PAGE = 3, 15  # page 3 in fetch_pages[0], page 15 in fetch_pages[1]


@pytest.fixture(scope="module")
def broken_partner(stack: Stack):
    """The partner of the job with failed pages: page 3 answers 404, page 15 lacks an id."""
    partner = BrokenPartner(stack.partner_url, {MISSING_PAGE * PAGE_SIZE}, {POISONED_PAGE * PAGE_SIZE})
    with broken_partner_server(partner) as url:
        partner.url = url
        yield partner


@pytest.fixture(scope="module")
def failed_pages_job(jobs: Jobs, broken_partner: BrokenPartner) -> FailedPagesJob:
    return FailedPagesJob(jobs.failed_pages.id, broken_partner)


@pytest.fixture(scope="module")
def failed_plan_job(jobs: Jobs) -> str:
    assert jobs.failed_plan.final["State"] == "failed"
    return jobs.failed_plan.id


def page_counts(browser: HeadlessChromium, where: str) -> dict[str, int]:
    return json.loads(
        browser.evaluate(
            f"JSON.stringify(Object.fromEntries([...document.querySelectorAll('{where} [data-field]')]"
            ".map((cell) => [cell.dataset.field, Number(cell.textContent)])))"
        )
    )


def test_a_failed_plan_shows_why_and_its_replay_button_starts_a_new_job(
    stack: Stack, failed_plan_job: str, browser: HeadlessChromium
):
    api = call(stack.airflow, "GET", job_path(failed_plan_job)).body
    assert api["Error"] and "404" in api["Error"], api
    open_page(browser, stack, {"job": failed_plan_job})
    wait_for_detail(browser, failed_plan_job)
    assert text_of(browser, "[data-plan-error]") == f"The plan failed: {api['Error']}"
    assert "(no pages planned)" in text_of(browser, "#detail-progress")
    browser.screenshot(SCREENSHOTS / "failed-plan.png")

    result = press(browser, "replay")
    new_job = browser.evaluate("document.querySelector('#action-result a[data-new-job]').dataset.newJob")
    assert result == f"Replay started: new job {new_job} (queued)."
    assert new_job.startswith("replay__")  # the page sent an Idempotency-Key
    # The new job appears in the list, and its link opens it here.
    browser.wait_for(f"document.querySelector('tr[data-job-id={json.dumps(new_job)}]') !== null", timeout=30)
    browser.screenshot(SCREENSHOTS / "replay-result.png")
    run = stack.airflow.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{new_job}")
    assert run["note"] == f"Replay of job {failed_plan_job}" and run["conf"] == api["Conf"]
    browser.evaluate("document.querySelector('#action-result a[data-new-job]').click()")
    wait_for_detail(browser, new_job)


def test_a_replay_asked_twice_with_one_key_starts_one_job(stack: Stack, failed_plan_job: str):
    runs = f"/api/v2/dags/{DAG_ID}/dagRuns?limit=1"
    before = stack.airflow.request("GET", runs)["total_entries"]
    key = {"Idempotency-Key": "double-click-7c1d"}
    answers = [
        call(stack.airflow, "POST", job_path(failed_plan_job, "/replay"), headers=key) for _ in range(2)
    ]
    assert [answer.status for answer in answers] == [201, 200]
    assert answers[0].body["jobId"] == answers[1].body["jobId"]
    assert answers[1].headers["idempotent-replayed"] == "true"
    assert stack.airflow.request("GET", runs)["total_entries"] == before + 1


def test_a_job_with_failed_pages_is_explained_then_repaired_with_the_buttons(
    stack: Stack, failed_pages_job: FailedPagesJob, browser: HeadlessChromium
):
    job_id, partner = failed_pages_job.id, failed_pages_job.partner
    api = call(stack.airflow, "GET", job_path(job_id)).body
    assert (api["State"], api["FailedToComplete"], api["Total"]) == ("failed", 2, PAGES), api
    assert api["Actions"] == {"Replay": True, "Redrive": True, "RerunFailed": True}

    # What a user checks first: the counts, and why pages failed, as the API says.
    open_page(browser, stack, {"job": job_id})
    wait_for_detail(browser, job_id)
    assert page_counts(browser, "#detail-progress") == {key: api[key] for key in SEED_KEYS}
    shown_reasons = json.loads(
        browser.evaluate(
            "JSON.stringify([...document.querySelectorAll('[data-reason]')].map((li) => li.dataset.reason))"
        )
    )
    assert shown_reasons == [group["Reason"] for group in api["FailedReasons"]]
    assert any("HTTP 404" in reason for reason in shown_reasons)
    assert any(reason.startswith("dead-lettered after 3 receives") for reason in shown_reasons)
    browser.screenshot(SCREENSHOTS / "failed-pages.png")

    # The chart: the pages it draws are the timeline's, completed and failed.
    timeline = call(stack.airflow, "GET", job_path(job_id, "/timeline")).body
    drawn = json.loads(
        browser.evaluate(
            "JSON.stringify(['completed', 'failed'].map((kind) => "
            "[...document.querySelectorAll(`#chart rect[data-${kind}]`)]"
            ".reduce((sum, rect) => sum + Number(rect.dataset[kind]), 0)))"
        )
    )
    assert drawn == [api["SuccessfullyCompleted"], api["FailedToComplete"]]
    assert sum(bucket["Completed"] for bucket in timeline["Buckets"]) == drawn[0]
    browser.screenshot(SCREENSHOTS / "chart.png", selector="#chart")

    # Redrive: the poisoned page's raw object is fixed first, then its dead letter goes back.
    raw_key = f"jobs/{safe_job_id(job_id)}/raw/page-{POISONED_PAGE:06d}.json"
    stack.s3.put_object(Bucket=RAW_BUCKET, Key=raw_key, Body=partner.good_page(POISONED_PAGE * PAGE_SIZE))
    result = press(browser, "redrive")
    # The consumer, the report and end_of_job.
    assert result == "Redrive: 1 page(s) sent back to processing, 3 task(s) cleared: processing runs again."
    browser.screenshot(SCREENSHOTS / "redrive-result.png")
    after_redrive = wait_until_finished(stack, job_id)
    assert (after_redrive["State"], after_redrive["FailedToComplete"]) == ("failed", 1), after_redrive
    assert [group["Sample"] for group in after_redrive["FailedReasons"]] == [[f"page-{MISSING_PAGE:06d}"]]

    # Rerun the failed pages: the partner serves page 3 again; only it is fetched again.
    partner.healed = True
    requests_before = partner.requests_now()
    fetch_tries = {ti["map_index"]: ti["try_number"] for ti in stack.airflow.task_instances(DAG_ID, job_id)
                   if ti["task_id"] == "fetch_pages"}  # fmt: skip
    open_page(browser, stack, {"job": job_id})  # the page a user reloads to see the finished job
    wait_for_detail(browser, job_id)
    result = press(browser, "rerun-failed")
    assert result.startswith(
        f"Rerun: 1 page(s) run again in this job (page-{MISSING_PAGE:06d}); 1 fetch task(s)"
    )
    assert result.endswith("0 dead letter(s) moved back to processing.")
    browser.screenshot(SCREENSHOTS / "rerun-failed-result.png")
    repaired = wait_until_finished(stack, job_id)
    assert (repaired["State"], repaired["SuccessfullyCompleted"], repaired["FailedToComplete"]) == (
        "success",
        PAGES,
        0,
    ), repaired
    fetched_again = {start: n - requests_before.get(start, 0) for start, n in partner.requests_now().items()}
    assert {start for start, n in fetched_again.items() if n} == {MISSING_PAGE * PAGE_SIZE}
    tries = {ti["map_index"]: ti["try_number"] for ti in stack.airflow.task_instances(DAG_ID, job_id)
             if ti["task_id"] == "fetch_pages"}  # fmt: skip
    assert (tries[0], tries[1]) == (fetch_tries[0] + 1, fetch_tries[1])  # the other batch never reran


def viewer_token(stack: Stack) -> str:
    passwords = json.loads((stack.airflow.home / "passwords.json").read_text())
    answer = stack.airflow.request(
        "POST", "/auth/token", {"username": VIEWER, "password": passwords[VIEWER]}, auth=False
    )
    return answer["access_token"]


def test_a_read_only_user_sees_the_job_without_buttons_and_may_not_act(
    stack: Stack, jobs: Jobs, browser: HeadlessChromium
):
    token, job_id = viewer_token(stack), jobs.by_job_api.id
    detail = call(stack.airflow, "GET", job_path(job_id), token=token)
    assert detail.status == 200 and detail.body["Actions"] == {
        "Replay": False,
        "Redrive": False,
        "RerunFailed": False,
    }
    for action in ("/replay", "/redrive", "/rerun-failed"):
        answer = call(stack.airflow, "POST", job_path(job_id, action), token=token)
        assert answer.status == 403, (action, answer.body)
    browser.page("Network.setCookie", {"name": "_token", "value": token, "url": stack.airflow.base_url + "/"})
    open_page(browser, stack, {"job": job_id})
    wait_for_detail(browser, job_id)
    assert action_buttons(browser) == {}
    assert text_of(browser, "[data-read-only]") == (
        f"You may read this job; acting on it needs more permissions on the {DAG_ID} DAG."
    )
    assert page_counts(browser, "#detail-progress") == {key: detail.body[key] for key in SEED_KEYS}
    browser.screenshot(SCREENSHOTS / "read-only-user.png")


def test_a_job_state_or_page_that_does_not_exist_is_explained_on_the_page(
    stack: Stack, jobs: Jobs, browser: HeadlessChromium
):
    job_id = jobs.by_rest_api.id
    # The API: 404 for what is not there, 422 for what cannot be.
    assert call(stack.airflow, "GET", job_path("no-such-job")).status == 404
    assert call(stack.airflow, "GET", job_path(job_id, "/tasks?state=Done")).status == 422
    assert call(stack.airflow, "GET", job_path(job_id, "/tasks/page-000999")).status == 404
    assert call(stack.airflow, "GET", job_path(job_id, "/tasks/first")).status == 422

    open_page(browser, stack, {"job": "no-such-job"})
    browser.wait_for("document.body.dataset.detail === 'error'")
    assert text_of(browser, "#detail-why").startswith(
        "Cannot show job no-such-job: Job 'no-such-job' not found: no poller DAG"
    )
    browser.screenshot(SCREENSHOTS / "unknown-job.png")

    open_page(browser, stack, {"job": job_id, "state": "Done", "page": "page-000999"})
    wait_for_detail(browser, job_id)
    assert text_of(browser, "#page-error").startswith(
        "Cannot list the pages: Unknown page state 'Done': use one of"
    )
    assert text_of(browser, "#page-one") == (
        f"Cannot show page page-000999: Page 'page-000999' not found in job '{job_id}': "
        "its pages are page-000000 .. page-000019"
    )
    browser.screenshot(SCREENSHOTS / "unknown-state-and-page.png")
