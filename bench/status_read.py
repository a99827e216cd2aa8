"""What live status costs at 100,000 pages: bytes per flush and the job API's read latency.

    .venv/bin/python bench/status_read.py [--pages 100000] [--reads 10]   # needs PostgreSQL on 127.0.0.1

In a scratch PostgreSQL database (dropped afterwards) it migrates Airflow, serializes the project's
DAGs and creates one running ``api_poller`` run planned as the plan task plans 100,000 pages
(``plan_pages``/``batch_pages``: 5 mapped fetch tasks at the default concurrency of 25), with the
plan's XComs. Then it fills the page status as the tasks write it: one ``StatusRecorder`` per fetch
task and one for the consumer, marking each page Started -> PayloadSaved -> Enqueued (fetch) and
SuccessfullyCompleted (consumer) with the details the tasks record, each flush an
``XComModel.set`` of the task's whole document (what the execution API does with a task's
``xcom_push``). At 10%, 50% and 100% of the job it flushes every task and measures:

* bytes per flush (the JSON each task writes, and what PostgreSQL stores), and the write time;
* the read path: ``load_job_progress`` and the ``GET /jobs/{id}`` route's function (``get_job``,
  with the run lookup), p50/p95 over ``--reads`` calls.

It also replays a whole run's flush schedule (the recorder's own interval rule, at the pace of the
10,000-page benchmark) to give the bytes written per run, and the bytes the progress page reads
per second (it polls every 2 s). Results: ``results/status_read.md`` and ``.json``. Run it before
and after a change of the status representation; it does not change the product.
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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=100_000)
    parser.add_argument("--reads", type=int, default=10, help="reads per measurement (p50/p95)")
    parser.add_argument("--label", default="before", help="which state of the code this measures")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite status_read.md from status_read.json, run nothing"
    )
    return parser.parse_args(argv)


@dataclass
class Flush:
    task: str
    records: int
    json_bytes: int
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
    plan = [
        {"batch": [page.to_dict() for page in batch], "url": URL, "concurrency_per_task": share}
        for batch, share in zip(batches, share_concurrency(CONCURRENCY, len(batches)), strict=True)
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
    """A recorder's publish: the task's whole document into its page_status XCom, timed."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    def publish(value: Any) -> None:
        started = time.perf_counter()
        with create_session() as session:
            XComModel.set(
                names.STATUS_KEY, value, dag_id=names.POLLER_DAG_ID, task_id=task_id, run_id=run_id,
                map_index=map_index, session=session,
            )  # fmt: skip
        seconds = time.perf_counter() - started
        label = task_id if map_index < 0 else f"{task_id}[{map_index}]"
        flushes.append(Flush(label, len(value), len(json.dumps(value)), seconds))

    return publish


def stored_bytes(run_id: str) -> dict[str, int]:
    """What PostgreSQL holds for each task's page_status XCom (after TOAST compression)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    query = select(XComModel.task_id, XComModel.map_index, func.pg_column_size(XComModel.value)).where(
        XComModel.run_id == run_id, XComModel.key == names.STATUS_KEY
    )
    with create_session() as session:
        return {
            (task if index < 0 else f"{task}[{index}]"): int(size)
            for task, index, size in session.execute(query)
        }


# -- filling and reading ----------------------------------------------------------------------


def fetch_marks(recorder: StatusRecorder, run_id: str, pages: list[PageTask]) -> None:
    for page in pages:
        recorder.mark(page.page_id, PageState.STARTED)
        recorder.mark(
            page.page_id, PageState.PAYLOAD_SAVED, attempts=1, raw_key=raw_payload_key(run_id, page.page_id)
        )
        recorder.mark(page.page_id, PageState.ENQUEUED, message_id=str(uuid.uuid4()))


def consumer_marks(recorder: StatusRecorder, run_id: str, pages: list[PageTask]) -> None:
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


def read_paths(run_id: str, reads: int) -> dict[str, dict[str, float]]:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from api_poller.adapters.progress import load_job_progress
    from api_poller.jobs_api.routes import get_job
    from api_poller.settings import load_settings

    settings = load_settings()

    def job_detail() -> Any:
        with create_session() as session:
            run = session.scalars(select(DagRun).where(DagRun.run_id == run_id)).one()
            return get_job(run, session, settings)

    return {
        "load_job_progress": timed(lambda: load_job_progress(names.POLLER_DAG_ID, run_id), reads),
        "GET /jobs/{id} (get_job)": timed(job_detail, reads),
    }


def fill_and_measure(run_id: str, batches: list[list[PageTask]], reads: int) -> list[dict[str, Any]]:
    clock = FakeClock()
    flushes: list[Flush] = []
    fetchers = [
        StatusRecorder(xcom_writer(run_id, names.FETCH_TASK, index, flushes), FLUSH_SECONDS, clock)
        for index in range(len(batches))
    ]
    consumer = StatusRecorder(xcom_writer(run_id, names.CONSUME_TASK_ID, -1, flushes), FLUSH_SECONDS, clock)
    every_page = [page for batch in batches for page in batch]
    fetched = [0] * len(batches)  # pages marked so far, per fetch task
    consumed = 0
    checkpoints = []
    for fraction in CHECKPOINTS:
        for index, (recorder, batch) in enumerate(zip(fetchers, batches, strict=True)):
            upto = round(len(batch) * fraction)
            fetch_marks(recorder, run_id, batch[fetched[index] : upto])
            fetched[index] = upto
        upto = round(len(every_page) * fraction)
        consumer_marks(consumer, run_id, every_page[consumed:upto])
        consumed = upto
        first = len(flushes)
        for recorder in [*fetchers, consumer]:
            recorder.flush()
        written = flushes[first:]
        log(f"{fraction:.0%} of the job: {sum(f.json_bytes for f in written) / 1e6:.1f} MB flushed; reading")
        checkpoints.append(
            {
                "fraction": fraction,
                "pages_completed": upto,
                "flushes": [asdict(flush) for flush in written],
                "stored_bytes": stored_bytes(run_id),
                "reads": read_paths(run_id, reads),
            }
        )
        clock.now += 3600  # the next checkpoint's first mark may flush, as a task's would
    return checkpoints


# -- the report -------------------------------------------------------------------------------


def bytes_per_record(flushes: list[dict[str, Any]], consumer: bool) -> float:
    chosen = [f for f in flushes if (f["task"] == names.CONSUME_TASK_ID) == consumer and f["records"]]
    return float(sum(f["json_bytes"] for f in chosen) / sum(f["records"] for f in chosen))


def markdown(report: dict[str, Any]) -> str:
    last = report["checkpoints"][-1]
    fetch_rate, consumer_rate = (
        bytes_per_record(last["flushes"], False),
        bytes_per_record(last["flushes"], True),
    )
    run = report["whole_run"]
    written_mb = (
        run["fetch_records_written"] * fetch_rate + run["consumer_records_written"] * consumer_rate
    ) / 1e6
    document_mb = sum(f["json_bytes"] for f in last["flushes"]) / 1e6
    out = [
        f"# Status at {report['pages']:,} pages: {report['label']} ({report['taken_at']})",
        "",
        f"On {report['cores']} cores, load average {report['load_average']['start']} "
        f"at the start, {report['load_average']['end']} at the end (1, 5, 15 min: the "
        "machine is shared, and latencies grow with its load).",
        "",
        f"Scratch PostgreSQL, Airflow {report['airflow']}; one running `api_poller` run planned for "
        f"{report['pages']:,} pages in {report['fetch_tasks']} fetch tasks; page statuses written as real "
        "`page_status` XCom rows by the tasks' `StatusRecorder` (`XComModel.set` of each task's whole "
        f"document). Reads: p50/p95 of {report['reads']} calls (p95: call {p95_index(report['reads']) + 1} "
        f"of {report['reads']} by time). Generated by `bench/status_read.py`.",
        "",
        "| job done | task | records in its document | JSON bytes per flush | stored bytes | write s |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for point in report["checkpoints"]:
        for flush in point["flushes"]:
            if flush["task"].startswith(names.FETCH_TASK) and not flush["task"].endswith("[0]"):
                continue  # the fetch tasks are alike: one stands for all
            out.append(
                f"| {point['fraction']:.0%} | {flush['task']} | {flush['records']:,} | "
                f"{flush['json_bytes']:,} | {point['stored_bytes'].get(flush['task'], 0):,} | "
                f"{flush['seconds']:.3f} |"
            )
    out += [
        "",
        "| job done | read path | p50 s | p95 s | max s |",
        "| ---: | --- | ---: | ---: | ---: |",
    ]
    for point in report["checkpoints"]:
        for path, numbers in point["reads"].items():
            out.append(
                f"| {point['fraction']:.0%} | {path} | {numbers['p50_s']} | {numbers['p95_s']} | "
                f"{numbers['max_s']} |"
            )
    out += [
        "",
        f"A whole run at {RUN_PACE_PAGES_PER_S:g} pages/s ({run['seconds']:,} s), by the recorders' "
        "flush rule "
        f"(every {FLUSH_SECONDS:g} s, or records/2000 s when longer): each fetch task flushes "
        f"{run['fetch_flushes_per_task']:,} times and the consumer {run['consumer_flushes']:,} times, "
        f"writing about **{written_mb:,.0f} MB** of status JSON in all "
        f"({fetch_rate:.0f} bytes a fetch record, {consumer_rate:.0f} a consumer record). "
        f"At the end every read loads all {len(last['flushes'])} documents, **{document_mb:.1f} MB** of "
        f"JSON; the progress page, polling every {PROGRESS_POLL_S:g} s, reads "
        f"{document_mb / PROGRESS_POLL_S:.1f} MB/s per open page.",
        "",
    ]
    return "\n".join(out)


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
    if args.render_only:
        report = json.loads((args.out / "status_read.json").read_text())
        (args.out / "status_read.md").write_text(markdown(report))
        return 0
    if not postgres_reachable():
        print("status_read: needs PostgreSQL on 127.0.0.1:5432 (user postgres), as the integration tests do",
              file=sys.stderr)  # fmt: skip
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
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
        report = measure(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "status_read.json").write_text(json.dumps(report, indent=1) + "\n")
    table = markdown(report)
    (args.out / "status_read.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
