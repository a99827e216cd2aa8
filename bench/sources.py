"""Benchmark: a planned source (total known: pages fetched in parallel) vs a walked one (cursor: one
page after the other), on the same simulator, through the source engine as the DAG drives it.

One run starts, on 127.0.0.1 only, moto's server (``moto_server.py``, as ``bench/run``) and ONE
partner-API simulator (fixed latency, 100 records a page, no faults), then for each source:
``plan_source_job`` (reads page 1 and plans) and every fetch task of the plan
(``fetch_task_arguments`` -> ``fetch_source_batch``, each task in its own thread as mapped tasks
run side by side), with real S3 writes and SQS announces. It checks every page landed (S3 objects,
SQS messages, records) and reports pages/s and records/s. It also times the parse of 50 source
files (``load_sources``) and, when the DAG factory exists, a DagBag with 50 sources vs none.

Usage: ``.venv/bin/python bench/sources.py [--pages N] [--latency-ms X]``; results in
``bench/results/sources.{md,json}``. No timed assertion: it measures and reports.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from harness.config import RESULTS, ROOT

sys.path[:0] = [str(ROOT / "include"), str(ROOT / "devtools")]

import boto3  # noqa: E402
import yaml  # noqa: E402
from harness.console import log  # noqa: E402
from harness.services import moto  # noqa: E402

from api_poller.aws.resources import ensure_resources  # noqa: E402
from api_poller.core.keys import raw_prefix  # noqa: E402
from api_poller.core.lifecycle import StatusRecorder  # noqa: E402
from api_poller.pipeline.source_fetch import fetch_source_batch, fetch_task_arguments  # noqa: E402
from api_poller.pipeline.source_plan import plan_source_job  # noqa: E402
from api_poller.settings import PollerSettings  # noqa: E402
from api_poller.sources.spec import SourceSpec, load_sources, parse_source, source_files  # noqa: E402

if TYPE_CHECKING:
    from api_poller.aws.clients import S3Client, SqsClient

PAGE_SIZE = 100
PARSE_SOURCES = 50
PARSE_REPEATS = 5
DAGBAG_REPEATS = 6  # the first pays the imports: median of the 5 after it
DAG_FACTORY = ROOT / "dags" / "api_poller_sources.py"
# The two sources measured: same records, same simulator, only the paginator differs.
PLANNED = {
    "name": "bench_planned",
    "path": "/offset/items",
    "records": "data.items",
    "primary_key": "id",
    "paginator": {"type": "offset", "page_size": PAGE_SIZE, "total_path": "meta.total"},
}
WALKED = {
    "name": "bench_walked",
    "path": "/cursor/items",
    "records": "items",
    "primary_key": "id",
    "paginator": {"type": "cursor", "cursor_path": "next_cursor", "page_size": PAGE_SIZE},
}


@dataclass
class Conn:
    """The source's Airflow HTTP Connection, duck-typed (what ``partner.auth`` reads): no auth."""

    host: str
    login: str | None = None
    password: str | None = None
    schema: str | None = None
    port: int | None = None
    conn_id: str = "partner"
    extra_dejson: dict[str, Any] = field(default_factory=dict)


@dataclass
class SourceRun:
    source: str
    mode: str
    fetch_tasks: int
    concurrency: list[int]
    pages: int
    records: int
    wall_s: float
    plan_s: float
    fetch_s: float
    pages_per_s: float
    records_per_s: float
    simulator_requests: int
    s3_objects: int
    sqs_messages: int
    stop_reasons: list[str | None]
    complete: bool
    # CPU seconds used during the run: this process (plan + fetch tasks) and each server.
    cpu_s: dict[str, float]


class BenchTimeout(Exception):
    pass


def http_json(url: str, method: str = "GET") -> Any:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def wait_for(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            http_json(url)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@contextmanager
def simulator(work: Path, pages: int, latency_ms: int) -> Iterator[str]:
    """ONE simulator for both sources: fixed latency, 100 records a page, no faults."""
    from api_poller_dev.local_stack import background_process, free_port

    port = free_port()
    command = [
        sys.executable,
        "-m",
        "api_poller_dev.simulator",
        "--host=127.0.0.1",
        f"--port={port}",
        f"--total-records={pages * PAGE_SIZE}",
        f"--page-size={PAGE_SIZE}",
        f"--latency-ms={latency_ms}",
        "--error-rate=0",
        "--seed=42",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "devtools")}
    with background_process(command, work / "simulator.log", env=env):
        base_url = f"http://127.0.0.1:{port}"
        wait_for(f"{base_url}/health")
        yield base_url


def queue_depth(sqs: SqsClient, queue_url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def object_count(s3: S3Client, bucket: str, prefix: str) -> int:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sum(page.get("KeyCount", 0) for page in pages)


def child_cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) of this process's children by role, from /proc (Linux)."""
    seconds: dict[str, float] = {}
    ticks = os.sysconf("SC_CLK_TCK")
    children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()
    for pid in children:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        role = "simulator" if "simulator" in command else "moto" if "moto" in command else "other"
        seconds[role] = seconds.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return seconds


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {role: round(after[role] - before.get(role, 0.0), 2) for role in sorted(after)}


def cpu_snapshot() -> dict[str, float]:
    return {"this process": time.process_time(), **child_cpu_seconds()}


def run_source(
    spec: SourceSpec,
    *,
    settings: PollerSettings,
    connection: Conn,
    s3: S3Client,
    sqs: SqsClient,
    queue_url: str,
    base_url: str,
) -> SourceRun:
    """Plan, then every fetch task of the plan at once (threads, as mapped tasks run side by side)."""
    job_id = f"manual__bench_{spec.name}_{int(time.time())}"
    http_json(f"{base_url}/admin/reset-stats", method="POST")
    messages_before = queue_depth(sqs, queue_url)

    cpu_before = cpu_snapshot()
    started = time.perf_counter()
    plan = plan_source_job(spec, job_id, None, settings, connection, None)
    planned = time.perf_counter()

    def fetch_task(arguments: dict[str, Any]) -> dict[str, Any]:
        recorder = StatusRecorder(lambda records: None, interval=settings.status_flush_seconds)
        return fetch_source_batch(
            settings,
            spec,
            job_id=job_id,
            connection=connection,
            s3_client=s3,
            sqs_client=sqs,
            queue_url=queue_url,
            recorder=recorder,
            **arguments,
        )

    tasks = fetch_task_arguments(plan)
    pool = ThreadPoolExecutor(max_workers=len(tasks), thread_name_prefix="fetch")
    try:
        results = list(pool.map(fetch_task, tasks))
    finally:
        # Not ``with``: on the time limit, leave at once (main() ends the process) instead of waiting.
        pool.shutdown(wait=False, cancel_futures=True)
    ended = time.perf_counter()
    cpu = cpu_used(cpu_before, cpu_snapshot())

    pages = sum(result["saved"] for result in results)
    records = sum(result["records"] for result in results)
    wall = ended - started
    return SourceRun(
        source=spec.name,
        mode=plan["mode"],
        fetch_tasks=len(tasks),
        concurrency=list(plan["concurrency_shares"]),
        pages=pages,
        records=records,
        wall_s=round(wall, 3),
        plan_s=round(planned - started, 3),
        fetch_s=round(ended - planned, 3),
        pages_per_s=round(pages / wall, 2),
        records_per_s=round(records / wall, 1),
        simulator_requests=int(http_json(f"{base_url}/stats")["requests"]),
        s3_objects=object_count(s3, settings.raw_bucket, raw_prefix(job_id)),
        sqs_messages=queue_depth(sqs, queue_url) - messages_before,
        stop_reasons=[result.get("stop_reason") for result in results],
        complete=all(not result["failed"] and not result["truncated"] for result in results),
        cpu_s=cpu,
    )


# ---- parse time of 50 source files -------------------------------------------------------------

PARSE_SHAPES: list[dict[str, Any]] = [
    {"path": "/offset/items", "records": "data.items", "paginator": PLANNED["paginator"]},
    {"path": "/cursor/items", "records": "items", "paginator": WALKED["paginator"]},
    {
        "path": "/pages/items",
        "records": "results",
        "paginator": {"type": "page_number", "page_size": 100, "total_pages_path": "total_pages"},
        "auth": {"type": "bearer"},
    },
    {
        "path": "/cursor-has-more/items",
        "records": "$.records",
        "paginator": {
            "type": "cursor",
            "has_more_path": "has_more",
            "cursor_key": "id",
            "cursor_param": "after",
            "page_size": 100,
        },
        "auth": {"type": "basic"},
    },
    {
        "path": "/next-body/items",
        "records": "items",
        "paginator": {"type": "next_url", "next_url_path": "links.next", "page_size": 100},
    },
    {
        "path": "/link/items",
        "records": "$",
        "paginator": {"type": "next_url", "link_header": True, "limit_param": "per_page", "page_size": 100},
    },
]


def write_source_files(folder: Path, count: int) -> None:
    """``count`` valid source files, every paginator shape in turn, each with its own Connection."""
    for index in range(count):
        document = {
            "name": f"partner_{index:02d}",
            "connection_id": f"partner_{index:02d}",
            "primary_key": "id",
            "schedule": "@daily",
            **PARSE_SHAPES[index % len(PARSE_SHAPES)],
        }
        parse_source(document, "check.yaml")  # every generated file must be valid
        (folder / f"partner_{index:02d}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))


def median_seconds(action: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), samples


def parse_timings(work: Path) -> dict[str, Any]:
    folder = work / "sources"
    folder.mkdir()
    write_source_files(folder, PARSE_SOURCES)
    sources, errors = load_sources(folder)
    if len(sources) != PARSE_SOURCES or errors:
        raise RuntimeError(f"expected {PARSE_SOURCES} valid sources, got {len(sources)} and errors {errors}")
    median, samples = median_seconds(lambda: load_sources(folder), PARSE_REPEATS)
    result: dict[str, Any] = {
        "sources": PARSE_SOURCES,
        "load_sources_median_ms": round(median * 1000, 2),
        "load_sources_samples_ms": [round(sample * 1000, 2) for sample in samples],
        "dagbag": dagbag_timings(work, folder) if DAG_FACTORY.exists() else None,
    }
    return result


DAGBAG_SCRIPT = """
import json, statistics, sys, time
from airflow.dag_processing.dagbag import DagBag
samples, bag = [], None
for _ in range(int(sys.argv[2])):
    started = time.perf_counter()
    bag = DagBag(dag_folder=sys.argv[1])
    samples.append(time.perf_counter() - started)
print(json.dumps({"samples": samples, "dags": len(bag.dags), "import_errors": len(bag.import_errors)}))
"""


def dagbag_timings(work: Path, sources: Path) -> dict[str, Any]:
    """A DagBag over a dags folder holding the factory, with 50 sources and with none (fresh process)."""
    timings = {}
    for label, files in (("50_sources", source_files(sources)), ("no_sources", [])):
        dags = work / f"dags_{label}"
        # The default place (dags/sources/), also named by the setting.
        source_folder = dags / "sources"
        source_folder.mkdir(parents=True)
        for file in files:
            (source_folder / file.name).write_text(file.read_text())
        # The factory and its companions (the broken-sources error file), as deployed.
        for dag_file in DAG_FACTORY.parent.glob("api_poller_source*.py"):
            (dags / dag_file.name).write_text(dag_file.read_text())
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(ROOT / "plugins")]),
            "AIRFLOW_HOME": str(work / "airflow_home"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
            "API_POLLER_SOURCES_FOLDER": str(source_folder),
        }
        completed = subprocess.run(
            [sys.executable, "-c", DAGBAG_SCRIPT, str(dags), str(DAGBAG_REPEATS)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        measured = json.loads(completed.stdout.strip().splitlines()[-1])
        samples = measured["samples"]
        timings[label] = {
            # The first parse in a fresh process pays Airflow's and the package's imports.
            "first_ms": round(samples[0] * 1000, 1),
            "median_ms": round(statistics.median(samples[1:] or samples) * 1000, 1),
            "samples_ms": [round(sample * 1000, 1) for sample in measured["samples"]],
            "dags": measured["dags"],
            "import_errors": measured["import_errors"],
        }
    return timings


# ---- reporting -------------------------------------------------------------------------------


def render(report: dict[str, Any]) -> str:
    runs = report["runs"]
    lines = [
        f"Run {report['started']} on {report['cores']} cores (load average at start {report['load_start']}, "
        f"at end {report['load_end']}); one simulator, --latency-ms {report['latency_ms']}, "
        f"{PAGE_SIZE} records/page, no faults, {report['pages']} pages; moto with bench/moto_server.py's "
        "SQS fixes; plan + every fetch task (threads), real S3 writes and SQS announces.",
        "",
        "| source | paginator | mode | fetch tasks (concurrency) | pages | records | wall s | plan s "
        "| pages/s | records/s | S3 objects | SQS messages | complete | CPU s: engine / moto / simulator |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for run, paginator in zip(runs, ("offset + total", "cursor"), strict=True):
        shares = "+".join(str(share) for share in run["concurrency"])
        if run["mode"] != "planned":
            shares = "1 at a time"
        cpu = run["cpu_s"]
        cpu_text = " / ".join(str(cpu.get(role, "-")) for role in ("this process", "moto", "simulator"))
        lines.append(
            f"| {run['source']} | {paginator} | {run['mode']} | {run['fetch_tasks']} ({shares}) "
            f"| {run['pages']} | {run['records']} | {run['wall_s']} | {run['plan_s']} | {run['pages_per_s']} "
            f"| {run['records_per_s']} | {run['s3_objects']} | {run['sqs_messages']} | {run['complete']} "
            f"| {cpu_text} |"
        )
    walk_bound = round(1000 / max(report["latency_ms"], 1), 1)
    lines += [
        "",
        f"Planned / walked pages/s: **{report['ratio']}x**. A walk cannot beat one page per round trip "
        f"(latency {report['latency_ms']} ms: at most {walk_bound} pages/s).",
        "",
    ]
    parse = report["parse"]
    lines.append(
        f"Parse of {parse['sources']} source files (`load_sources`, median of {PARSE_REPEATS}): "
        f"**{parse['load_sources_median_ms']} ms** (samples {parse['load_sources_samples_ms']} ms)."
    )
    dagbag = parse["dagbag"]
    if dagbag is None:
        lines.append("DagBag: not measured (no `dags/api_poller_sources.py` factory on this branch).")
    else:
        for label, timing in dagbag.items():
            where = label.replace("_", " ")
            lines.append(
                f"DagBag over the factory, {where}: **{timing['median_ms']} ms** (median of the "
                f"{DAGBAG_REPEATS - 1} parses after the first; the first, with the imports: "
                f"{timing['first_ms']} ms); {timing['dags']} DAGs, {timing['import_errors']} import errors."
            )
    return "\n".join(lines) + "\n"


def on_alarm(signum: int, frame: FrameType | None) -> None:
    raise BenchTimeout("the benchmark ran past its time limit")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=1000, help="pages of the dataset (default 1000)")
    parser.add_argument("--latency-ms", type=int, default=50, help="fixed simulator latency (default 50)")
    parser.add_argument("--time-limit", type=int, default=600, help="hard stop, seconds (default 600)")
    parser.add_argument("--out", type=Path, default=RESULTS / "sources", help="results path, without suffix")
    args = parser.parse_args(argv)
    if args.pages < 1 or args.latency_ms < 0:
        parser.error("--pages must be >= 1 and --latency-ms >= 0")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(args.time_limit)
    settings = PollerSettings(raw_bucket="bench-sources-raw", processed_bucket="bench-sources-processed")
    report: dict[str, Any] = {
        "started": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_start": [round(value, 2) for value in os.getloadavg()],
        "pages": args.pages,
        "latency_ms": args.latency_ms,
        "page_size": PAGE_SIZE,
    }
    try:
        with tempfile.TemporaryDirectory(prefix="bench-sources-") as scratch:
            work = Path(scratch)
            with (
                moto(work, stock=False) as endpoint,
                simulator(work, args.pages, args.latency_ms) as base_url,
            ):
                log(f"moto at {endpoint}, simulator at {base_url} ({args.pages} pages, {args.latency_ms} ms)")
                session = boto3.Session(
                    aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
                )
                s3 = session.client("s3", endpoint_url=endpoint)
                sqs = session.client("sqs", endpoint_url=endpoint)
                queue_url = ensure_resources(s3, sqs, settings, create=True)["queue_url"]
                connection = Conn(host=base_url)
                runs = []
                for document in (PLANNED, WALKED):
                    spec = parse_source({**document, "connection_id": "partner"}, f"{document['name']}.yaml")
                    log(f"{spec.name}: plan + fetch")
                    run = run_source(
                        spec,
                        settings=settings,
                        connection=connection,
                        s3=s3,
                        sqs=sqs,
                        queue_url=queue_url,
                        base_url=base_url,
                    )
                    log(f"{spec.name}: {run.pages} pages in {run.wall_s} s = {run.pages_per_s} pages/s")
                    runs.append(asdict(run))
            log(f"parsing {PARSE_SOURCES} source files")
            report["parse"] = parse_timings(work)
    except BenchTimeout as error:
        log(f"stopped: {error}")
        os._exit(2)  # fetch threads may still be waiting on a server that is gone
    finally:
        signal.alarm(0)
    report["runs"] = runs
    report["ratio"] = round(runs[0]["pages_per_s"] / runs[1]["pages_per_s"], 2)
    report["load_end"] = [round(value, 2) for value in os.getloadavg()]
    markdown = render(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text("# Planned vs walked source\n\n" + markdown)
    print(markdown)
    return 0 if all(run["complete"] and run["pages"] == args.pages for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
