"""Benchmark: peak memory of the task code with large records (50 KB each, 100 a page: 5 MB pages).

Issue 14 item 3: a task process was seen at 531 MB resident at the default concurrency (25), as
whole responses and their parsed records were held at once. This runs, side by side in one run,
the code of a BEFORE commit (extracted with ``git archive``, default 477ad42) and of this tree:

* the seed DAG's fetch task (``pipeline.fetch.fetch_batch``) over every page, concurrency 25;
* a source DAG's fetch task (``pipeline.source_fetch.fetch_source_batch``, a planned offset source,
  records at ``data.items``) over every page, concurrency 25;
* the process step (``pipeline.consume.PageConsumer``, ``process_workers`` = 16 threads) over the
  pages each fetch saved.

Each task runs in its own fresh Python process (not an Airflow task process: no Airflow
supervisor, and Airflow's own imports are not loaded), against moto's server (``moto_server.py``)
and the simulator on 127.0.0.1 with real S3 writes and SQS messages. The child reports its RSS
before the work and its peak RSS (``ru_maxrss``); "added" is the difference: the pages' memory. To
set it against the 300 MB target, the RSS of a process that imports what an Airflow task process
imports (``airflow.sdk``, the Amazon provider's S3 hook) is measured once too.

Usage: ``.venv/bin/python bench/large_pages.py [--pages 40] [--record-bytes 51200] [--before 477ad42]``;
results in ``bench/results/large_pages.{md,json}``. No timed assertion: it measures and reports.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.config import RESULTS, ROOT

sys.path.insert(0, str(ROOT / "devtools"))

PAGE_SIZE = 100
CONCURRENCY = 25  # the default (API_POLLER_DEFAULT_CONCURRENCY)
RAW, PROCESSED = "bench-large-raw", "bench-large-processed"
SOURCE = {
    "name": "bench_large",
    "path": "/offset/items",
    "records": "data.items",
    "primary_key": "id",
    "paginator": {"type": "offset", "page_size": PAGE_SIZE, "total_path": "meta.total"},
    "connection_id": "partner",
}


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmRSS")


def peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# ---- the child: one task's work, in the code tree given -------------------------------------------


def child(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, args.code)
    import boto3

    if args.task == "airflow-imports":
        before = rss_mb()
        import airflow.sdk  # noqa: F401
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook  # noqa: F401

        return {"start_rss_mb": before, "peak_rss_mb": peak_mb(), "rss_after_imports_mb": rss_mb()}

    # Every module the tasks use is imported before the RSS "before the work" is read.
    from api_poller.core.lifecycle import StatusRecorder
    from api_poller.core.planning import PageTask, page_id
    from api_poller.partner.paginators import PageRequest
    from api_poller.pipeline.consume import PageConsumer, RunOutcome
    from api_poller.pipeline.fetch import fetch_batch
    from api_poller.pipeline.source_fetch import fetch_source_batch
    from api_poller.settings import PollerSettings
    from api_poller.sources.spec import parse_source

    budget: dict[str, Any] = {}
    if args.budget_mb and "page_bytes_in_flight" in PollerSettings.__dataclass_fields__:  # not in 'before'
        budget["page_bytes_in_flight"] = int(args.budget_mb * 2**20)
    settings = PollerSettings(raw_bucket=RAW, processed_bucket=PROCESSED, url_allowlist="127.0.0.1", **budget)
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    s3 = session.client("s3", endpoint_url=args.endpoint)
    sqs = session.client("sqs", endpoint_url=args.endpoint)
    queue_url = sqs.get_queue_url(QueueName=settings.queue_name)["QueueUrl"]
    s3.list_objects_v2(Bucket=RAW, MaxKeys=1)  # both clients loaded and connected before "before"
    recorder = StatusRecorder(lambda records: None, interval=settings.status_flush_seconds)
    start = rss_mb()
    started = time.perf_counter()
    if args.task == "seed-fetch":
        pages = [PageTask(page=n, start_at=n * PAGE_SIZE, count=PAGE_SIZE) for n in range(args.pages)]
        result = fetch_batch(
            settings,
            job_id=args.job,
            url=f"{args.base_url}/payload",
            pages=pages,
            concurrency=CONCURRENCY,
            s3_client=s3,
            sqs_client=sqs,
            queue_url=queue_url,
            recorder=recorder,
        )
        done = {"saved": result["saved"], "failed": len(result["failed"])}
    elif args.task == "source-fetch":
        spec = parse_source(dict(SOURCE), "bench_large.yaml")
        base = {"url": f"{args.base_url}/offset/items", "page": 1}
        batch = [
            {
                "url": f"{args.base_url}/offset/items",
                "page": n + 1,
                "params": [["offset", str(n * PAGE_SIZE)], ["limit", str(PAGE_SIZE)]],
            }
            for n in range(args.pages)
        ]
        result = fetch_source_batch(
            settings,
            spec,
            job_id=args.job,
            mode="planned",
            base_request=PageRequest.from_dict(base).to_dict(),
            batch=[PageRequest.from_dict(request).to_dict() for request in batch],
            concurrency=CONCURRENCY,
            requests_per_second=None,
            connection=_Conn(args.base_url),
            s3_client=s3,
            sqs_client=sqs,
            queue_url=queue_url,
            recorder=recorder,
        )
        done = {"saved": result["saved"], "failed": len(result["failed"]), "records": result["records"]}
    else:  # process
        pages = [page_id(n + 1 if args.kind == "source" else n) for n in range(args.pages)]
        consumer = PageConsumer(
            s3=s3,
            sqs=sqs,
            queue_url=queue_url,
            dead_letter_queue_url=sqs.get_queue_url(QueueName=settings.dead_letter_queue_name)["QueueUrl"],
            raw_bucket=RAW,
            processed_bucket=PROCESSED,
            job_id=args.job,
            pages=pages,
            recorder=recorder,
            fetch=_FetchEnded({page: {"state": "Enqueued"} for page in pages}),
            workers=settings.process_workers,
        )
        outcome = consumer.run(600)
        done = {"settled": outcome is RunOutcome.SETTLED, "pending": len(consumer.pending)}
    traced = {}
    if os.environ.get("PYTHONTRACEMALLOC"):  # where the peak is: Python's allocations or native ones
        import tracemalloc

        traced = {"python_peak_mb": round(tracemalloc.get_traced_memory()[1] / 2**20, 1)}
    return {
        **done,
        **traced,
        "start_rss_mb": start,
        "peak_rss_mb": peak_mb(),
        "added_mb": round(peak_mb() - start, 1),
        "seconds": round(time.perf_counter() - started, 2),
    }


class _Conn:
    """The source's HTTP Connection, duck-typed as ``partner.auth`` reads it: no auth."""

    def __init__(self, host: str) -> None:
        self.host, self.login, self.password, self.schema, self.port = host, None, None, None, None
        self.conn_id, self.extra_dejson = "partner", {}


class _FetchEnded:
    """The fetch step, as the consumer sees it: ended, every page enqueued."""

    def __init__(self, records: dict[str, dict[str, Any]]) -> None:
        self._records = records

    def fetch_finished(self) -> bool:
        return True

    def fetch_running(self) -> bool:
        return False

    def fetch_records(self) -> dict[str, dict[str, Any]]:
        return self._records


# ---- the parent: services, both code trees, the table ------------------------------------------


def http(url: str, method: str = "GET") -> bytes:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=30) as response:
        return bytes(response.read())


def run_child(
    code: Path, task: str, kind: str, job: str, args: argparse.Namespace, endpoint: str, base_url: str
) -> dict[str, Any]:
    command = [
        sys.executable, __file__, "--child", "--code", str(code), "--task", task, "--kind", kind,
        "--job", job, "--pages", str(args.pages), "--endpoint", endpoint, "--base-url", base_url,
        "--budget-mb", str(args.budget_mb),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        return {"error": done.stderr[-2000:]}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def render(report: dict[str, Any]) -> str:
    lines = [
        "# Large pages: peak RSS of the task code, before vs after (issue 14 item 3)",
        "",
        f"Run {report['started']} on {report['cpus']} cores (load average at start {report['load_start']}, "
        f"at end {report['load_end']}); {report['pages']} pages of {PAGE_SIZE} records of "
        f"{report['record_bytes']} bytes ({report['page_mb']} MB a page); concurrency {CONCURRENCY}, "
        "16 processing workers; "
        f"API_POLLER_PAGE_BYTES_IN_FLIGHT {report['budget_mb']} MB. before = {report['before']}, "
        f"after = {report['after']}. Each task in its own Python process (not under Airflow), moto's server "
        "and the simulator on 127.0.0.1.",
        "",
        "| task | code | peak RSS MB | RSS before the work MB | added by the pages MB | seconds | outcome |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in report["rows"]:
        outcome = (
            row.get("error", "").splitlines()[-1:]
            if "error" in row
            else {k: v for k, v in row.items() if k in ("saved", "failed", "records", "settled", "pending")}
        )
        lines.append(
            f"| {row['task']} | {row['code']} | {row.get('peak_rss_mb', '-')} "
            f"| {row.get('start_rss_mb', '-')} | {row.get('added_mb', '-')} | {row.get('seconds', '-')} "
            f"| {outcome} |"
        )
    imports = report["airflow_imports"]
    lines += [
        "",
        f"A fresh process that imports `airflow.sdk` and the Amazon provider's S3 hook (what an Airflow task "
        f"process has loaded) is at {imports.get('rss_after_imports_mb')} MB RSS "
        f"(from {imports.get('start_rss_mb')} MB): "
        "add the difference to the rows above for an Airflow task process's figure.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=40)
    parser.add_argument("--record-bytes", type=int, default=50 * 1024)
    parser.add_argument("--before", default="477ad42", help="the commit measured as 'before'")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--budget-mb",
        type=float,
        default=0,
        help="API_POLLER_PAGE_BYTES_IN_FLIGHT for 'after' (0: the default)",
    )
    parser.add_argument("--kinds", default="seed,source", help="which DAG kinds to run (seed, source)")
    parser.add_argument("--codes", default="before,after", help="which code trees to run (before, after)")
    # The child's options.
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for name in ("--code", "--task", "--kind", "--job", "--endpoint", "--base-url"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0

    sys.path.insert(0, str(ROOT / "include"))  # the parent runs this tree's code only
    import boto3
    from api_poller_dev.local_stack import background_process, free_port
    from harness.console import log
    from harness.services import moto

    from api_poller.aws.resources import ensure_resources
    from api_poller.settings import PollerSettings

    settings = PollerSettings(raw_bucket=RAW, processed_bucket=PROCESSED)
    report: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_start": [round(x, 2) for x in os.getloadavg()],
        "pages": args.pages,
        "record_bytes": args.record_bytes,
        "before": args.before,
        "after": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        + " (this tree)",
        "budget_mb": args.budget_mb or settings.page_bytes_in_flight / 2**20,
        "rows": [],
    }
    with tempfile.TemporaryDirectory(prefix="large_pages_") as scratch:
        work = Path(scratch)
        before = work / "before"
        before.mkdir()
        archive = subprocess.run(
            ["git", "archive", args.before, "include"], cwd=ROOT, capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive.stdout, check=True)
        trees = {"before": before / "include", "after": ROOT / "include"}
        port = free_port()
        simulator = [
            sys.executable, "-m", "api_poller_dev.simulator", "--host=127.0.0.1", f"--port={port}",
            f"--total-records={args.pages * PAGE_SIZE}", f"--page-size={PAGE_SIZE}", "--latency-ms=100",
            "--error-rate=0", "--seed=42", f"--record-bytes={args.record_bytes}",
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT / "devtools")}
        with (
            moto(work, stock=False) as endpoint,
            background_process(simulator, work / "simulator.log", env=env),
        ):
            base_url = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    http(f"{base_url}/health")
                    break
                except OSError:
                    time.sleep(0.1)
            page = http(f"{base_url}/payload?startAt=0&count={PAGE_SIZE}")
            report["page_mb"] = round(len(page) / 2**20, 2)
            log(f"moto at {endpoint}, simulator at {base_url}: {report['page_mb']} MB pages")
            report["airflow_imports"] = run_child(
                ROOT / "include", "airflow-imports", "-", "-", args, endpoint, base_url
            )
            for kind in args.kinds.split(","):
                for code in args.codes.split(","):
                    tree = trees[code]
                    http(
                        f"{endpoint}/moto-api/reset", method="POST"
                    )  # each run starts from empty (and frees moto)
                    session = boto3.Session(
                        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
                    )
                    ensure_resources(
                        session.client("s3", endpoint_url=endpoint),
                        session.client("sqs", endpoint_url=endpoint),
                        settings,
                        create=True,
                    )
                    job = f"manual__large_{kind}_{code}_{int(time.time())}"
                    for task in (f"{kind}-fetch", "process"):
                        row = {"task": f"{kind} {'fetch' if task != 'process' else 'process'}", "code": code}
                        row.update(run_child(tree, task, kind, job, args, endpoint, base_url))
                        log(f"{row}")
                        report["rows"].append(row)
    report["load_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "large_pages.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "large_pages.md").write_text(render(report))
    print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
