"""One command, a full sync on the embedded local stack (``scripts/local-sync``).

Starts moto's server (S3/SQS), prepares an Airflow home on SQLite, runs one DAG once
(``dag.test``: every task really runs, one at a time, in this process), prints the progress JSON
while it goes, and copies the processed output to a local folder.

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
from typing import Any

from api_poller_dev.local_source_run import (
    SOURCES_SETTING,
    LocalRunError,
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


def print_progress_until(done: threading.Event, dag_id: str) -> None:
    """Print the running job's progress JSON whenever it changes."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    from api_poller.adapters.progress import load_job_progress

    last = None
    while not done.wait(1.0):
        try:
            with create_session() as session:
                runs = DagRun.find(dag_id=dag_id, session=session)
                if not runs:
                    continue
                run_id = max(runs, key=lambda run: run.run_after).run_id
                progress = load_job_progress(dag_id, run_id, session)
        except Exception:  # SQLite may be busy for a moment; the next tick reads again
            continue
        if progress != last:
            print(json.dumps(progress), flush=True)
            last = progress


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


def run_and_report(dag: Any, conf: dict[str, Any], state_dir: Path, airflow_home: Path) -> int:
    """Run the DAG once with ``conf``, printing progress; copy its output; say where it is."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from api_poller.adapters.progress import load_job_progress
    from api_poller.core.keys import processed_prefix
    from api_poller.settings import load_settings

    print(f"triggering {dag.dag_id} with conf {json.dumps(conf)}", flush=True)
    done = threading.Event()
    printer = threading.Thread(target=print_progress_until, args=(done, dag.dag_id), daemon=True)
    started = time.monotonic()
    printer.start()
    try:
        dag_run = dag.test(run_conf=conf)
    finally:
        done.set()
        printer.join()
    elapsed = time.monotonic() - started

    settings = load_settings()
    print(json.dumps(load_job_progress(dag.dag_id, dag_run.run_id)))
    prefix = processed_prefix(dag_run.run_id)
    target = state_dir / "output" / prefix
    copied = copy_output(S3Hook().get_conn(), settings.processed_bucket, prefix, target)
    print(f"job {dag_run.run_id}: {dag_run.state} in {elapsed:.1f}s")
    print(f"output: s3://{settings.processed_bucket}/{prefix} ({copied} files, copied to {target})")
    print(f"task logs: {airflow_home / 'logs'}")
    return 0 if str(dag_run.state) == "success" else 1


def run_seed(args: argparse.Namespace) -> int:
    logs = args.state_dir / "logs"
    with (
        moto_server(logs) as endpoint,
        simulator_server(logs, simulator_args(args)) as partner_url,
        embedded_airflow(args.state_dir, endpoint, {}) as airflow_home,
    ):
        print(f"moto (S3/SQS): {endpoint}\npartner API simulator: {partner_url}/payload", flush=True)
        from airflow.dag_processing.dagbag import DagBag

        dag = DagBag(dag_folder=str(PROJECT_ROOT / "dags")).get_dag(names.POLLER_DAG_ID)
        conf = {
            "url": f"{partner_url}/payload",
            "concurrency": args.concurrency,
            "fetch_tasks": args.fetch_tasks,
        }
        return run_and_report(dag, conf, args.state_dir, airflow_home)


def run_source(args: argparse.Namespace) -> int:
    """The source file's DAG, built by the DAG factory, run once on the local stack."""
    spec = read_source(args.source)
    conf = source_conf(args)
    logs = args.state_dir / "logs"
    folder = args.state_dir / "sources"
    simulator = simulator_args(args) if args.simulator else None
    with (
        partner_for(spec, args.source, folder, logs, simulator) as (staged, partner_url),
        moto_server(logs) as endpoint,
        embedded_airflow(args.state_dir, endpoint, {SOURCES_SETTING: str(folder)}) as airflow_home,
    ):
        print(f"moto (S3/SQS): {endpoint}", flush=True)
        if partner_url:
            print(f"partner API simulator ({spec.auth.type}): {partner_url}", flush=True)
        print(f"source {spec.name!r} from {args.source} (staged as {staged})", flush=True)
        dag = source_dag(spec, PROJECT_ROOT / "dags")
        return run_and_report(dag, conf, args.state_dir, airflow_home)


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
