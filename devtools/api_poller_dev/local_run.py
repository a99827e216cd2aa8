"""One command, a full sync on the embedded local stack (``scripts/local-sync``).

Starts moto's server (S3/SQS), prepares an Airflow home on SQLite, runs one DAG once
(``dag.test``: every task really runs, one at a time, in this process), shows its progress while
it goes (``console``: a live display on a terminal, plain lines otherwise, JSON lines with --json;
Airflow's own logs go to a file), copies the processed output to a local folder and summarizes.
The exit code is 0 when the job was complete, 1 when it was not, 2 for bad input.

Without --source: the seed's workload, the ``api_poller`` DAG against the partner-API simulator.

    local-sync [--total-records 10000] [--error-rate 0.1] ...

With --source FILE: that source's DAG ``api_poller__<name>``, built by the DAG factory from the
file, against your API. Its Airflow Connection comes from the environment, never from the command
line: AIRFLOW_CONN_<CONNECTION_ID IN UPPER CASE>, as JSON or as a URI, e.g.

    export AIRFLOW_CONN_ACME_API='{"conn_type": "http", "host": "https://api.acme.example",
                                   "password": "<token>"}'
    export AIRFLOW_CONN_ACME_API='http://:<url-encoded token>@api.acme.example/https'

(in the URI form the scheme is the connection type, http, and the path is the scheme the
requests use: /https).
    local-sync --source dags/sources/acme_orders.yaml [--param status=open] [--full-refresh]

Add --simulator to run the source against the local simulator instead (started with the source's
auth kind; the Connection then points at it with the simulator's credentials; --total-records,
--page-size, --latency-ms, --error-rate and --seed shape it), to try a source file before you
have access to the partner's API.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from api_poller_dev.console import (
    Reporter,
    Snapshot,
    Summary,
    count_retries,
    failures_by_reason,
    reporter_for,
)
from api_poller_dev.local_source_run import (
    SOURCES_SETTING,
    LocalRunError,
    check_connection_in_environment,
    partner_for,
    read_source,
    source_conf,
    source_dag,
)
from api_poller_dev.local_stack import (
    PROJECT_ROOT,
    airflow_environment,
    aws_connection,
    moto_server,
    simulator_server,
)

from api_poller import names

STATE_DIR = PROJECT_ROOT / ".local"
YIELD_SETTING = "API_POLLER_PROCESS_YIELD_SECONDS"
RUN_LOG = "local-sync.log"  # Airflow's logs and the task logs of the in-process run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_argument_group("a source file (see docs/sources.md)")
    source.add_argument(
        "--source",
        type=Path,
        metavar="FILE",
        help="run this source file's DAG; its Connection from AIRFLOW_CONN_<ID> (JSON or URI)",
    )
    source.add_argument(
        "--simulator",
        action="store_true",
        help="with --source: run against the local simulator (in the source's auth kind), not your API",
    )
    source.add_argument(
        "--param",
        action="append",
        metavar="NAME=VALUE",
        help="with --source: an overridable query parameter's value (repeatable)",
    )
    source.add_argument(
        "--full-refresh", action="store_true", help="with --source: ignore the incremental watermark"
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=STATE_DIR,
        help=f"Airflow home, logs and copied output (default: {STATE_DIR})",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object per line (progress events, a summary)"
    )
    parser.add_argument("--poison-pages", help="the simulator's pages whose records lack their id, e.g. 3,7")
    parser.add_argument("--total-records", type=int, default=10_000)
    parser.add_argument("--page-size", type=int, default=100, help="the simulator's maxRecordsPerPage")
    parser.add_argument("--latency-ms", default="0-1000", help="fixed ('200') or uniform range ('0-1000')")
    parser.add_argument("--error-rate", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--concurrency", type=int, default=25, help="requests in flight for the job")
    # dag.test runs mapped tasks one after another, so one fetch task keeps all requests in flight.
    parser.add_argument("--fetch-tasks", type=int, default=1)
    args = parser.parse_args(argv)
    if args.source is None and (args.simulator or args.param or args.full_refresh):
        parser.error("--simulator, --param and --full-refresh go with --source")
    return args


def watch_progress(done: threading.Event, dag_id: str, reporter: Reporter, started: float) -> None:
    """Show the running job's progress whenever it changes (polled from the metadata DB)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    from api_poller.adapters.progress import load_job_progress, load_page_statuses

    last = None
    while not done.wait(1.0):
        try:
            with create_session() as session:
                runs = DagRun.find(dag_id=dag_id, session=session)
                if not runs:
                    continue
                run_id = max(runs, key=lambda run: run.run_after).run_id
                progress = load_job_progress(dag_id, run_id, session)
                retries = count_retries(load_page_statuses(dag_id, run_id, session))
        except Exception:  # SQLite may be busy for a moment; the next tick reads again
            continue
        if (progress, retries) != last or reporter.every_tick:
            reporter.update(Snapshot(progress, retries, time.monotonic() - started))
            last = (progress, retries)


@contextmanager
def output_to_log(log_path: Path) -> Iterator[tuple[TextIO, TextIO]]:
    """Send everything written to this process's stdout and stderr (Airflow's logging, the task
    logs dag.test prints, warnings) to ``log_path``; yields the terminal's stdout and stderr, kept
    for the display. File descriptors are redirected, so nothing bypasses it."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    terminal_out = os.fdopen(saved[0], "w", buffering=1, encoding="utf-8")
    terminal_err = os.fdopen(saved[1], "w", buffering=1, encoding="utf-8")
    with open(log_path, "w", encoding="utf-8") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield terminal_out, terminal_err
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            terminal_out.close()
            terminal_err.close()


def copy_output(s3_client, bucket: str, prefix: str, target: Path) -> int:
    count = 0
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            path = target / item["Key"][len(prefix) :]
            path.parent.mkdir(parents=True, exist_ok=True)
            s3_client.download_file(bucket, item["Key"], str(path))
            count += 1
    return count


def simulator_args(args: argparse.Namespace) -> list[str]:
    return [
        f"--total-records={args.total_records}",
        f"--page-size={args.page_size}",
        f"--latency-ms={args.latency_ms}",
        f"--error-rate={args.error_rate}",
        f"--seed={args.seed}",
        *([f"--poison-pages={args.poison_pages}"] if args.poison_pages else []),
    ]


@contextmanager
def embedded_airflow(state_dir: Path, endpoint: str, extra: dict[str, str]) -> Iterator[Path]:
    """Airflow configured for the local stack (before Airflow is first imported: it reads its
    configuration then), its database migrated. Yields its home."""
    airflow_home = state_dir / "airflow"
    airflow_home.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        airflow_environment(
            airflow_home,
            {
                "AIRFLOW_CONN_AWS_DEFAULT": aws_connection(endpoint),
                # dag.test runs one task at a time: the process step must give way to the
                # fetch tasks while it has nothing to do (see PageMessageSensor).
                YIELD_SETTING: os.environ.get(YIELD_SETTING, "2"),
                **extra,
            },
        )
    )
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    yield airflow_home


def count_records(folder: Path) -> int:
    """Records in the copied output (one JSON object per line)."""
    files = (path for path in folder.rglob("*") if path.is_file()) if folder.exists() else ()
    return sum(1 for path in files for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def run_and_report(
    dag: Any, conf: dict[str, Any], state_dir: Path, log_path: Path, reporter: Reporter
) -> int:
    """Run the DAG once with ``conf``, showing progress; copy its output; summarize."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from api_poller.adapters.progress import load_job_progress, load_page_statuses
    from api_poller.core.keys import processed_prefix
    from api_poller.settings import load_settings

    reporter.info(f"triggering {dag.dag_id} with conf {json.dumps(conf)}", dag_id=dag.dag_id, conf=conf)
    done = threading.Event()
    started = time.monotonic()
    watcher = threading.Thread(target=watch_progress, args=(done, dag.dag_id, reporter, started), daemon=True)
    watcher.start()
    try:
        dag_run = dag.test(run_conf=conf)
    finally:
        done.set()
        watcher.join()
    elapsed = time.monotonic() - started

    settings = load_settings()
    progress = load_job_progress(dag.dag_id, dag_run.run_id)
    statuses = load_page_statuses(dag.dag_id, dag_run.run_id)
    reporter.update(Snapshot(progress, count_retries(statuses), elapsed))
    prefix = processed_prefix(dag_run.run_id)
    target = state_dir / "output" / prefix
    copied = copy_output(S3Hook().get_conn(), settings.processed_bucket, prefix, target)
    state = str(dag_run.state)
    total = int(progress.get("Total", 0))
    complete = (
        state == "success"
        and progress.get("TotalKnown") is not False
        and int(progress.get("FailedToComplete", 0)) == 0
        and int(progress.get("SuccessfullyCompleted", 0)) == total
    )
    summary = Summary(
        dag_id=dag.dag_id,
        run_id=dag_run.run_id,
        state=state,
        complete=complete,
        counts=progress,
        records=count_records(target),
        files=copied,
        s3_location=f"s3://{settings.processed_bucket}/{prefix}",
        local_copy=str(target),
        elapsed=elapsed,
        log_path=str(log_path),
        failures=failures_by_reason(statuses),
    )
    reporter.finish(summary)
    return 0 if complete else 1


def run_seed(args: argparse.Namespace) -> int:
    logs = args.state_dir / "logs"
    log_path = logs / RUN_LOG
    with (
        moto_server(logs) as endpoint,
        simulator_server(logs, simulator_args(args)) as partner_url,
        output_to_log(log_path) as (terminal, _),
    ):
        reporter = reporter_for(terminal, args.json)
        reporter.info(f"Airflow's logs: {log_path}", log_path=str(log_path))
        reporter.info(f"moto (S3/SQS): {endpoint}", moto=endpoint)
        reporter.info(f"partner API simulator: {partner_url}/payload", partner=f"{partner_url}/payload")
        with embedded_airflow(args.state_dir, endpoint, {}):
            from airflow.dag_processing.dagbag import DagBag

            dag = DagBag(dag_folder=str(PROJECT_ROOT / "dags")).get_dag(names.POLLER_DAG_ID)
            conf = {
                "url": f"{partner_url}/payload",
                "concurrency": args.concurrency,
                "fetch_tasks": args.fetch_tasks,
            }
            return run_and_report(dag, conf, args.state_dir, log_path, reporter)


def run_source(args: argparse.Namespace) -> int:
    """The source file's DAG, built by the DAG factory, run once on the local stack."""
    spec = read_source(args.source)
    conf = source_conf(args)
    if not args.simulator:
        check_connection_in_environment(spec, os.environ)  # before anything starts
    logs = args.state_dir / "logs"
    log_path = logs / RUN_LOG
    folder = args.state_dir / "sources"
    simulator = simulator_args(args) if args.simulator else None
    with (
        partner_for(spec, args.source, folder, logs, simulator) as (staged, partner_url),
        moto_server(logs) as endpoint,
        output_to_log(log_path) as (terminal, terminal_err),
    ):
        reporter = reporter_for(terminal, args.json)
        reporter.info(f"Airflow's logs: {log_path}", log_path=str(log_path))
        reporter.info(f"moto (S3/SQS): {endpoint}", moto=endpoint)
        if partner_url:
            reporter.info(f"partner API simulator ({spec.auth.type}): {partner_url}", partner=partner_url)
        reporter.info(f"source {spec.name!r} from {args.source} (staged as {staged})", source=spec.name)
        with embedded_airflow(args.state_dir, endpoint, {SOURCES_SETTING: str(folder)}):
            try:
                dag = source_dag(spec, PROJECT_ROOT / "dags")
            except LocalRunError as error:
                print(f"local-sync: {error}", file=terminal_err, flush=True)
                return 2
            return run_and_report(dag, conf, args.state_dir, log_path, reporter)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.source is None:
        return run_seed(args)
    try:
        return run_source(args)
    except LocalRunError as error:
        print(f"local-sync: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
