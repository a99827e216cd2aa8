"""What live status costs at 100,000 pages: bytes per flush and the job API's read latency.

    .venv/bin/python bench/status_read.py [--pages 100000] [--reads 10] [--label after]

It needs PostgreSQL on 127.0.0.1. In a scratch database (dropped afterwards) it migrates Airflow,
serializes the project's DAGs and creates one running ``api_poller`` run planned as the plan task
plans 100,000 pages (the page ranges of ``plan_batches``: 5 mapped fetch tasks at the default
concurrency of 25), with the plan's XComs. Then it fills the page status as the tasks write it: one
``StatusRecorder`` per fetch task and one for the consumer, marking each page Started ->
PayloadSaved -> Enqueued (fetch) and SuccessfullyCompleted (consumer) with the details the tasks
record, each publication written as ``adapters.status_publishing.xcom_publisher`` writes it (the
changed chunks, then the summary; one ``XComModel.set`` each, what the execution API does with a
task's ``xcom_push``).

At 10%, 50% and 100% of the job, after one second of work at the run's pace, it flushes every
task and measures:

* bytes per flush (summary and chunk JSON, the number of chunks, what PostgreSQL stores), write time;
* the read paths, p50/p95 over ``--reads`` calls, and the XCom JSON each call reads:
  ``load_job_progress`` and the job API's ``GET /jobs/{id}``, ``/jobs``, ``/jobs/{id}/tasks``
  (first page, offset 50,000, ``?state=Enqueued``), ``/jobs/{id}/tasks/{page_id}``,
  ``/jobs/{id}/timeline``, through FastAPI's TestClient (a user who may read every DAG);
* at 100%, the progress page's refresh: the list and the open job's three calls.

It also replays a whole run's flush schedule (the recorder's own interval rule, at the pace of the
10,000-page benchmark) to give the bytes written per run. Results: ``results/status_read.<label>.json``
and ``results/status_read.md``, which puts every label's run side by side. For "before", run this
script from a worktree of the code before the change with ``--label before``: its recorder
publishes whole documents, which the writer here stores as that code's tasks did.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request  # at module level: FastAPI resolves the override's annotation here
from harness.config import RESULTS, ROOT

sys.path[:0] = [str(ROOT / "include"), str(ROOT / "devtools")]

from api_poller_dev.local_airflow import postgres_reachable, scratch_postgres_database  # noqa: E402
from api_poller_dev.local_stack import airflow_environment  # noqa: E402
from harness.console import log  # noqa: E402
from harness.status_schedule import FakeClock, latency_summary, p95_index, whole_run_flushes  # noqa: E402

from api_poller import names  # noqa: E402 - include/ is on the path now
from api_poller.core.keys import processed_key, raw_payload_key  # noqa: E402
from api_poller.core.lifecycle import PageState, StatusRecorder  # noqa: E402
from api_poller.core.planning import (  # noqa: E402
    ApiMetadata,
    PageTask,
    batch_pages,
    choose_fetch_tasks,
    plan_batches,
    plan_pages,
    share_concurrency,
)

PAGE_SIZE = 100
CONCURRENCY = 25  # the job default: it decides the fetch-task count
CHECKPOINTS = (0.1, 0.5, 1.0)
RUN_PACE_PAGES_PER_S = 30.0  # the 10,000-page benchmark's Airflow rate (bench/README.md)
PROGRESS_POLL_S = 2.0  # the progress page refreshes every 2 s while a job runs
FLUSH_SECONDS = 1.0  # API_POLLER_STATUS_FLUSH_SECONDS' default
URL = "http://partner.example/payload"
DEFAULT_LIST_LIMIT = 25  # jobs_api.page: the progress page lists this many jobs
PROGRESS_PAGE_SIZE = 50  # progress_page.html's PAGE_SIZE: pages listed per screen
LABELS = ("before", "after")
ENQUEUED_PATH = "GET /jobs/{id}/tasks?state=Enqueued"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=100_000)
    parser.add_argument("--reads", type=int, default=10, help="reads per measurement (p50/p95)")
    parser.add_argument(
        "--label", choices=LABELS, default="after", help="which state of the code this measures"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite status_read.md from the status_read.<label>.json files, run nothing",
    )
    return parser.parse_args(argv)


@dataclass
class Flush:
    """One publication of one task: its XComs' JSON bytes (a summary and the chunks that changed;
    the earlier format: one XCom, the whole document, counted as its summary) and the write time."""

    task: str
    records: int  # page records carried (in chunks; the whole document's in the earlier format)
    json_bytes: int  # all XComs of the publication
    summary_bytes: int
    chunk_bytes: int
    chunks: int
    seconds: float


# -- the run in the database ------------------------------------------------------------------


def serialize_dags() -> None:
    """The project's DAGs into the database, as the dag-processor would leave them."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db

    manager = DagBundlesManager()  # type: ignore[no-untyped-call]  # Airflow leaves it unannotated
    manager.sync_bundles_to_db()
    bundle = manager.get_bundle("dags-folder")
    bag = BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name)
    sync_bag_to_db(bag, bundle.name, None)


def planned_batches(pages: int) -> list[list[PageTask]]:
    """The pages and their fetch tasks, as the plan task plans them."""
    planned = plan_pages(
        ApiMetadata(total_records=pages * PAGE_SIZE, max_records_per_page=PAGE_SIZE), PAGE_SIZE
    )
    return batch_pages(planned, choose_fetch_tasks(len(planned), CONCURRENCY, None))


def create_planned_run(run_id: str, batches: list[list[PageTask]]) -> None:
    """A running api_poller run whose plan step succeeded: its XComs and its mapped fetch tasks."""
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.models.taskmap import TaskMap
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    dag_id = names.POLLER_DAG_ID
    total = sum(len(batch) for batch in batches)
    job = {"job_id": run_id, "url": URL, "total_records": total * PAGE_SIZE, "page_size": PAGE_SIZE,
           "total_pages": total}  # fmt: skip
    # What the plan task returns since its batches are page ranges (``pipeline.plan``); the "before"
    # run is made with the earlier code's own copy of this script (one dict a page), see README.
    ranges = plan_batches(
        ApiMetadata(total_records=total * PAGE_SIZE, max_records_per_page=PAGE_SIZE), PAGE_SIZE, len(batches)
    )
    shares = share_concurrency(CONCURRENCY, len(batches))
    plan = [
        {
            "batch": ranged.to_dict(),
            "url": URL,
            "concurrency_per_task": share,
        }
        for ranged, share in zip(ranges, shares, strict=True)
    ]
    with create_session() as session:
        dag = SerializedDagModel.get_dag(dag_id, session=session)
        if dag is None:
            raise SystemExit(f"status_read: the {dag_id} DAG did not serialize (an import error in dags/?)")
        dag.create_dagrun(
            run_id=run_id,
            run_after=datetime.now(UTC),
            run_type=DagRunType.MANUAL,
            triggered_by=DagRunTriggeredByType.TEST,
            state=DagRunState.RUNNING,
            session=session,
        )
        session.flush()
        for key, value in (
            (names.JOB_KEY, job),
            (names.TOTAL_PAGES_KEY, total),
            (names.RETURN_VALUE_KEY, plan),
        ):
            XComModel.set(key, value, dag_id=dag_id, task_id=names.PLAN_TASK, run_id=run_id, session=session)
        session.add(TaskMap(dag_id, names.PLAN_TASK, run_id, map_index=-1, length=len(plan), keys=None))
        session.flush()
        TaskMap.expand_mapped_task(dag.get_task(names.FETCH_TASK), run_id, session=session)


def xcom_writer(run_id: str, task_id: str, map_index: int, flushes: list[Flush]) -> Callable[[Any], None]:
    """A recorder's publish as the task's ``xcom_publisher`` does it: each changed chunk
    (``page_status.<chunk>``), then the summary (``page_status``), one ``XComModel.set`` each (one
    execution-API call each in a task), timed. A recorder of the earlier format (the code before
    the change, run with ``--label before``) publishes its whole document to ``page_status``."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    def xcom_set(key: str, value: Any) -> int:
        with create_session() as session:
            XComModel.set(
                key, value, dag_id=names.POLLER_DAG_ID, task_id=task_id, run_id=run_id,
                map_index=map_index, session=session,
            )  # fmt: skip
        return len(json.dumps(value))

    def publish(value: Any) -> None:
        started = time.perf_counter()
        if hasattr(value, "summary"):  # a core.lifecycle.Publication
            from api_poller.core import status_document
            from api_poller.core.status_document import chunk_key

            # A chunk as the code at hand publishes it: JSON text (encode_chunk); an object before.
            encode = getattr(status_document, "encode_chunk", dict)
            chunk_bytes = sum(
                xcom_set(chunk_key(names.STATUS_KEY, chunk), encode(records))
                for chunk, records in value.chunks.items()
            )
            summary_bytes = xcom_set(names.STATUS_KEY, value.summary)
            records, chunks = sum(len(records) for records in value.chunks.values()), len(value.chunks)
        else:  # the earlier format: the whole document
            chunk_bytes, summary_bytes = 0, xcom_set(names.STATUS_KEY, value)
            records, chunks = len(value), 0
        seconds = time.perf_counter() - started
        label = task_id if map_index < 0 else f"{task_id}[{map_index}]"
        flushes.append(
            Flush(
                label,
                records,
                summary_bytes + chunk_bytes,
                summary_bytes,
                chunk_bytes,
                chunks,
                round(seconds, 4),
            )
        )

    return publish


def stored_bytes(run_id: str) -> dict[str, dict[str, int]]:
    """What PostgreSQL holds for each task's status XComs (after TOAST compression): its summary
    (the whole document, in the earlier format) and its detail chunks."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import func, or_, select

    query = select(
        XComModel.task_id, XComModel.map_index, XComModel.key, func.pg_column_size(XComModel.value)
    ).where(
        XComModel.run_id == run_id,
        or_(XComModel.key == names.STATUS_KEY, XComModel.key.startswith(f"{names.STATUS_KEY}.")),
    )
    stored: dict[str, dict[str, int]] = {}
    with create_session() as session:
        for task, index, key, size in session.execute(query):
            sizes = stored.setdefault(task if index < 0 else f"{task}[{index}]", {"summary": 0, "chunks": 0})
            sizes["summary" if key == names.STATUS_KEY else "chunks"] += int(size)
    return stored


# -- filling and reading ----------------------------------------------------------------------


def fetch_marks(recorder: StatusRecorder, run_id: str, pages: Sequence[PageTask]) -> None:
    for page in pages:
        recorder.mark(page.page_id, PageState.STARTED)
        recorder.mark(
            page.page_id, PageState.PAYLOAD_SAVED, attempts=1, raw_key=raw_payload_key(run_id, page.page_id)
        )
        recorder.mark(page.page_id, PageState.ENQUEUED, message_id=str(uuid.uuid4()))


def consumer_marks(recorder: StatusRecorder, run_id: str, pages: Sequence[PageTask]) -> None:
    for page in pages:
        recorder.mark(
            page.page_id, PageState.SUCCESSFULLY_COMPLETED,
            processed_key=processed_key(run_id, page.page_id), records=page.count, receives=1,
        )  # fmt: skip


def timed(call: Callable[[], Any], reads: int) -> dict[str, float]:
    seconds = []
    for _ in range(reads):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return latency_summary(seconds)


@contextmanager
def counting_xcom_reads() -> Iterator[list[int]]:
    """The JSON bytes of every XCom value the read path deserializes (each reader goes through
    ``XComModel.deserialize_value``), for one untimed call: counting costs time of its own."""
    from airflow.models.xcom import XComModel

    counted: list[int] = []
    original = XComModel.__dict__["deserialize_value"]

    def counting(result: Any) -> Any:
        value = original.__func__(result)
        counted.append(len(json.dumps(value, default=str)))
        return value

    XComModel.deserialize_value = staticmethod(counting)  # type: ignore[method-assign]
    try:
        yield counted
    finally:
        XComModel.deserialize_value = original  # type: ignore[method-assign]


def job_api_client() -> Any:
    """The job API app as the api-server mounts it, through FastAPI's TestClient (routes,
    dependencies, JSON responses), with a user who may read every DAG: what
    ``tests/unit/jobs_api/conftest.py`` does, minus the permission checks' bookkeeping."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.testclient import TestClient

    from api_poller.jobs_api import dependencies
    from api_poller.jobs_api.app import create_app
    from api_poller.settings import load_settings

    user = SimpleAuthManagerUser(username="status_read", role="admin")
    settings = load_settings()

    class ReadsEverything(dependencies.DagAccess):
        def require(self, method: Any, entity: Any, dag_id: str) -> None:
            return None

        def readable_dag_ids(self) -> set[str]:
            from airflow.models.dag import DagModel
            from airflow.utils.session import create_session
            from sqlalchemy import select

            with create_session() as session:
                return set(session.scalars(select(DagModel.dag_id)))

    def reads_everything(request: Request) -> dependencies.DagAccess:
        return ReadsEverything(request, user)

    app = create_app()
    app.dependency_overrides.update(
        {
            dependencies.get_dag_access: reads_everything,
            get_user: lambda: user,
            dependencies.optional_user: lambda: user,
            dependencies.get_settings: lambda: settings,
        }
    )
    return TestClient(app, headers={"Authorization": "Bearer status-read"})


def read_paths(client: Any, run_id: str, middle_page: str) -> dict[str, Callable[[], Any]]:
    """Each read path by its URL: a call that fails on anything but 200."""
    from api_poller.adapters.progress import load_job_progress

    job = f"/jobs/{run_id}"

    def get(url: str) -> Callable[[], Any]:
        def call() -> Any:
            response = client.get(url)
            if response.status_code != 200:
                raise SystemExit(
                    f"status_read: GET {url} answered {response.status_code}: {response.text[:300]}"
                )
            return response.json()

        return call

    return {
        "load_job_progress": lambda: load_job_progress(names.POLLER_DAG_ID, run_id),
        "GET /jobs/{id}": get(job),
        "GET /jobs (list)": get("/jobs"),
        "GET /jobs/{id}/tasks": get(f"{job}/tasks"),
        "GET /jobs/{id}/tasks?offset=50000": get(f"{job}/tasks?offset=50000"),
        ENQUEUED_PATH: get(f"{job}/tasks?state=Enqueued"),
        "GET /jobs/{id}/tasks/{page_id}": get(f"{job}/tasks/{middle_page}"),
        "GET /jobs/{id}/timeline": get(f"{job}/timeline"),
    }


def measure_reads(paths: dict[str, Callable[[], Any]], reads: int) -> dict[str, dict[str, Any]]:
    measured: dict[str, dict[str, Any]] = {}
    for name, call in paths.items():
        with counting_xcom_reads() as counted:
            answer = call()
        measured[name] = {
            **timed(call, reads),
            "xcom_bytes_read": sum(counted),
            "xcom_values_read": len(counted),
        }
        if isinstance(answer, dict) and "Matching" in answer:
            measured[name]["matching"] = answer["Matching"]
    return measured


def progress_page_poll(client: Any, run_id: str, reads: int) -> dict[str, Any]:
    """The progress page's data calls for one refresh with the job open, as its script makes them:
    the job list, then the job, then its timeline and first 50 pages (the page sends the last two
    together; here they run one after the other, so this is an upper bound)."""
    dag = f"dag_id={names.POLLER_DAG_ID}"
    urls = [
        f"/jobs?limit={DEFAULT_LIST_LIMIT}",
        f"/jobs/{run_id}?{dag}",
        f"/jobs/{run_id}/timeline?{dag}",
        f"/jobs/{run_id}/tasks?{dag}&offset=0&limit={PROGRESS_PAGE_SIZE}",
    ]

    def refresh() -> None:
        for url in urls:
            response = client.get(url)
            if response.status_code != 200:
                raise SystemExit(
                    f"status_read: GET {url} answered {response.status_code}: {response.text[:300]}"
                )

    with counting_xcom_reads() as counted:
        refresh()
    return {"urls": urls, **timed(refresh, reads), "xcom_bytes_read": sum(counted)}


def fill_and_measure(run_id: str, batches: list[list[PageTask]], reads: int) -> list[dict[str, Any]]:
    """Fill the status up to each checkpoint (one catch-up flush per task), then one second of a
    running job's work at the run's pace and its flush (the one the table reports), then read."""
    clock = FakeClock()
    flushes: list[Flush] = []
    fetchers = [
        StatusRecorder(xcom_writer(run_id, names.FETCH_TASK, index, flushes), FLUSH_SECONDS, clock)
        for index in range(len(batches))
    ]
    consumer = StatusRecorder(xcom_writer(run_id, names.CONSUME_TASK_ID, -1, flushes), FLUSH_SECONDS, clock)
    every_page = [page for batch in batches for page in batch]
    fetch_second = max(1, round(RUN_PACE_PAGES_PER_S / len(batches)))  # pages per fetch task per second
    consumer_second = round(RUN_PACE_PAGES_PER_S)
    client = job_api_client()
    paths = read_paths(client, run_id, every_page[len(every_page) // 2].page_id)
    fetched = [0] * len(batches)  # pages marked so far, per fetch task
    consumed = 0
    checkpoints = []
    for fraction in CHECKPOINTS:
        uptos = [round(len(batch) * fraction) for batch in batches]
        upto = round(len(every_page) * fraction)
        for index, (recorder, batch) in enumerate(zip(fetchers, batches, strict=True)):
            fetch_marks(recorder, run_id, batch[fetched[index] : uptos[index] - fetch_second])
        consumer_marks(consumer, run_id, every_page[consumed : upto - consumer_second])
        first = len(flushes)
        for recorder in [*fetchers, consumer]:
            recorder.flush()
        catch_up = flushes[first:]
        # One second of the running job: each task's next pages, then its timed flush.
        for index, (recorder, batch) in enumerate(zip(fetchers, batches, strict=True)):
            fetch_marks(recorder, run_id, batch[uptos[index] - fetch_second : uptos[index]])
            fetched[index] = uptos[index]
        consumer_marks(consumer, run_id, every_page[upto - consumer_second : upto])
        consumed = upto
        clock.now += FLUSH_SECONDS
        first = len(flushes)
        for recorder in [*fetchers, consumer]:
            recorder.flush()
        written = flushes[first:]
        log(
            f"{fraction:.0%} of the job: {sum(f.json_bytes for f in written) / 1e6:.2f} MB "
            "in a second's flushes; reading"
        )
        point: dict[str, Any] = {
            "fraction": fraction,
            "pages_completed": upto,
            "flushes": [asdict(flush) for flush in written],
            "catch_up_flushes": [asdict(flush) for flush in catch_up],
            "stored_bytes": stored_bytes(run_id),
            "reads": measure_reads(paths, reads),
        }
        if fraction == CHECKPOINTS[-1]:
            log("the progress page's refresh")
            point["progress_page"] = progress_page_poll(client, run_id, reads)
        checkpoints.append(point)
    return checkpoints


# -- the report -------------------------------------------------------------------------------


def bytes_per_record(flushes: list[dict[str, Any]], consumer: bool) -> float:
    """JSON bytes of a page record as published (chunks; the whole document before)."""
    chosen = [f for f in flushes if (f["task"] == names.CONSUME_TASK_ID) == consumer and f["records"]]
    record_bytes = sum(f.get("chunk_bytes") or f["json_bytes"] for f in chosen)
    return float(record_bytes / sum(f["records"] for f in chosen))


def run_written_mb(report: dict[str, Any]) -> float:
    """The status JSON a whole run writes: the replay's records at the bytes a record takes in
    the 100% flushes, plus the summaries the replay published (none in the earlier format)."""
    run, last = report["whole_run"], report["checkpoints"][-1]["flushes"]
    records = run["fetch_records_written"] * bytes_per_record(last, False)
    records += run["consumer_records_written"] * bytes_per_record(last, True)
    return (records + run.get("summary_bytes_written", 0)) / 1e6


def shown(task: str) -> bool:
    """The fetch tasks are alike: fetch_pages[0] stands for all."""
    return not task.startswith(names.FETCH_TASK) or task.endswith("[0]")


def mb(count: float) -> str:
    return f"{count / 1e6:,.2f} MB" if count >= 100_000 else f"{count / 1e3:,.1f} kB"


def markdown(reports: dict[str, dict[str, Any]]) -> str:
    labels = [label for label in LABELS if label in reports]
    first = reports[labels[0]]
    out = [
        f"# Live status at {first['pages']:,} pages: {' and '.join(labels)}, side by side",
        "",
        f"Generated by `bench/status_read.py` (one run per state of the code, one after the other in "
        f"one session; `--render-only` rewrites this file from `status_read.<label>.json`). Scratch "
        f"PostgreSQL, Airflow {first['airflow']}; one running `api_poller` run planned for "
        f"{first['pages']:,} pages in {first['fetch_tasks']} fetch tasks plus the consumer; page statuses "
        "written as real XCom rows the way each state of the code's tasks write them (after: the changed "
        "`page_status.<chunk>` XComs, then the `page_status` summary; before: the task's whole document "
        "in `page_status`), one `XComModel.set` per XCom. Reads go through the job API app with FastAPI's "
        "TestClient (routes, dependencies and JSON responses as the api-server serves them; a user who "
        "may read every DAG). Latencies: p50 and p95 of each run's calls per path (below).",
        "",
        "**The machine is shared** (2 cores with the lead and other helpers): load average (1, 5, 15 min)",
        "",
    ]
    for label in labels:
        report = reports[label]
        out.append(
            f"- {label} (code at `{report.get('commit', '?')}`, {report['taken_at']}): "
            f"{report['load_average']['start']} at the start, {report['load_average']['end']} at the end, "
            f"on {report['cores']} cores; {report['reads']} calls per read path (p95: call "
            f"{p95_index(report['reads']) + 1} of {report['reads']} by time)."
        )
    out += [
        "",
        "## Bytes per flush",
        "",
        f"At each point the tasks first catch up (one flush each, in the json as `catch_up_flushes`), then "
        f"do one second of a running job's work at {RUN_PACE_PAGES_PER_S:g} pages/s "
        f"({RUN_PACE_PAGES_PER_S / first['fetch_tasks']:g} pages per fetch task, "
        f"{RUN_PACE_PAGES_PER_S:g} for the consumer) and flush: that flush is the one below.",
        "",
        "| job done | task | code | records | summary JSON | chunks | chunk JSON | bytes per flush | stored "
        "(summary + chunks) | write s |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for position, point in enumerate(first["checkpoints"]):
        for task in [f["task"] for f in point["flushes"] if shown(f["task"])]:
            for label in labels:
                other = reports[label]["checkpoints"][position]
                [flush] = [f for f in other["flushes"] if f["task"] == task]
                stored = other["stored_bytes"].get(task, {"summary": 0, "chunks": 0})
                out.append(
                    f"| {point['fraction']:.0%} | {task} | {label} | {flush['records']:,} | "
                    f"{flush['summary_bytes']:,} | {flush['chunks']} | {flush['chunk_bytes']:,} | "
                    f"**{mb(flush['json_bytes'])}** | {stored['summary']:,} + {stored['chunks']:,} | "
                    f"{flush['seconds']:.3f} |"
                )
    out += [
        "",
        "Before, the summary column is the whole document (its only XCom).",
        "",
        "## Read latency",
        "",
        "XCom read: the JSON of every XCom value the call deserialized (counted on one extra, untimed call).",
        "",
        "| job done | read path | "
        + " | ".join(f"{label} p50 s | {label} p95 s | {label} XCom read" for label in labels)
        + " |",
        "| ---: | --- |" + " ---: | ---: | ---: |" * len(labels),
    ]
    for position, point in enumerate(first["checkpoints"]):
        for path in point["reads"]:
            cells = []
            for label in labels:
                numbers = reports[label]["checkpoints"][position]["reads"].get(path)
                cells.append(
                    "- | - | -"
                    if numbers is None
                    else f"{numbers['p50_s']} | **{numbers['p95_s']}** | {mb(numbers['xcom_bytes_read'])}"
                )
            out.append(f"| {point['fraction']:.0%} | {path} | {' | '.join(cells)} |")
    out += [
        "",
        "`?state=Enqueued` matches the pages enqueued and not yet completed "
        + ", ".join(
            f"{point['fraction']:.0%}: {point['reads'].get(ENQUEUED_PATH, {}).get('matching', '?'):,}"
            for point in first["checkpoints"]
        )
        + " (none at 100%: every page completed).",
        "",
        "## The progress page at 100%",
        "",
        f"One refresh with the job open, the calls its script makes every {PROGRESS_POLL_S:g} s: "
        + ", ".join(f"`{url}`" for url in first["checkpoints"][-1].get("progress_page", {}).get("urls", []))
        + " (the page sends the last two together; here one after the other).",
        "",
        "| code | refresh p50 s | refresh p95 s | XCom JSON read per refresh | per second, polling every "
        f"{PROGRESS_POLL_S:g} s |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label in labels:
        page = reports[label]["checkpoints"][-1].get("progress_page")
        if page:
            out.append(
                f"| {label} | {page['p50_s']} | **{page['p95_s']}** | {mb(page['xcom_bytes_read'])} | "
                f"{mb(page['xcom_bytes_read'] / PROGRESS_POLL_S)}/s |"
            )
    out += [
        "",
        "## A whole run",
        "",
        f"The flush schedule of a whole run replayed with the product's `StatusRecorder` (flush every "
        f"{FLUSH_SECONDS:g} s) at {RUN_PACE_PAGES_PER_S:g} pages/s, each record at the bytes it takes in "
        "the 100% flushes above (after: plus every summary the replay published).",
        "",
        "| code | run s | flushes per fetch task | consumer flushes | records written | status JSON "
        "written |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label in labels:
        run = reports[label]["whole_run"]
        records = run["fetch_records_written"] + run["consumer_records_written"]
        out.append(
            f"| {label} | {run['seconds']:,} | {run['fetch_flushes_per_task']:,} | "
            f"{run['consumer_flushes']:,} | {records:,} | **{run_written_mb(reports[label]):,.0f} MB** |"
        )
    out.append("")
    return "\n".join(out)


def read_reports(out: Path) -> dict[str, dict[str, Any]]:
    found = {label: out / f"status_read.{label}.json" for label in LABELS}
    return {label: json.loads(path.read_text()) for label, path in found.items() if path.exists()}


def code_commit() -> str:
    """The commit of the code measured (the worktree this script runs in)."""
    found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return found.stdout.strip() or "unknown"


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import airflow

    load_at_start = [round(value, 2) for value in os.getloadavg()]
    log("serializing the DAGs")
    serialize_dags()
    batches = planned_batches(args.pages)
    run_id = f"status_read__{uuid.uuid4().hex[:8]}"
    create_planned_run(run_id, batches)
    log(f"run {run_id}: {args.pages:,} pages in {len(batches)} fetch tasks; filling")
    checkpoints = fill_and_measure(run_id, batches, args.reads)
    log("replaying a whole run's flush schedule")
    return {
        "label": args.label,
        "commit": code_commit(),
        "taken_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "airflow": airflow.__version__,
        "pages": args.pages,
        "fetch_tasks": len(batches),
        "reads": args.reads,
        "checkpoints": checkpoints,
        "whole_run": whole_run_flushes(batches, RUN_PACE_PAGES_PER_S, FLUSH_SECONDS),
        "cores": os.cpu_count(),
        "load_average": {"start": load_at_start, "end": [round(value, 2) for value in os.getloadavg()]},
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.render_only:
        if not postgres_reachable():
            print(
                "status_read: needs PostgreSQL on 127.0.0.1:5432 (user postgres), as the integration "
                "tests do",
                file=sys.stderr,
            )
            return 2
        with (
            scratch_postgres_database("api_poller_status_read") as database_url,
            tempfile.TemporaryDirectory(prefix="status-read-airflow-") as home,
        ):
            os.environ.update(
                airflow_environment(
                    Path(home),
                    {
                        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url,
                        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
                    },
                )
            )
            log("migrating a scratch Airflow database")
            subprocess.run(
                [sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True
            )
            report = measure(args)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"status_read.{args.label}.json").write_text(json.dumps(report, indent=1) + "\n")
    reports = read_reports(args.out)
    if not reports:
        print(f"status_read: no status_read.<label>.json in {args.out}", file=sys.stderr)
        return 2
    table = markdown(reports)
    (args.out / "status_read.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
