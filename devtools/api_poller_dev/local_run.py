"""One command, a full sync on the embedded local stack.

Starts moto's server and the partner-API simulator, prepares an Airflow home on SQLite, runs the
``api_poller`` DAG once (``dag.test``: every task really runs, one at a time, in this process),
prints the progress JSON while it goes, and copies the processed output to a local folder.

    python -m api_poller_dev.local_run [--total-records 10000] [--error-rate 0.1] ...
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

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
    parser.add_argument("--total-records", type=int, default=10_000)
    parser.add_argument("--page-size", type=int, default=100, help="the simulator's maxRecordsPerPage")
    parser.add_argument("--latency-ms", default="0-1000", help="fixed ('200') or uniform range ('0-1000')")
    parser.add_argument("--error-rate", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--concurrency", type=int, default=25, help="requests in flight for the job")
    # dag.test runs mapped tasks one after another, so one fetch task keeps all requests in flight.
    parser.add_argument("--fetch-tasks", type=int, default=1)
    return parser.parse_args(argv)


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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    airflow_home = STATE_DIR / "airflow"
    airflow_home.mkdir(parents=True, exist_ok=True)
    logs = STATE_DIR / "logs"
    simulator_args = [
        f"--total-records={args.total_records}",
        f"--page-size={args.page_size}",
        f"--latency-ms={args.latency_ms}",
        f"--error-rate={args.error_rate}",
        f"--seed={args.seed}",
    ]
    with moto_server(logs) as endpoint, simulator_server(logs, simulator_args) as partner_url:
        # Airflow reads its configuration when first imported: set it up before that.
        os.environ.update(
            airflow_environment(
                airflow_home,
                {
                    "AIRFLOW_CONN_AWS_DEFAULT": aws_connection(endpoint),
                    # dag.test runs one task at a time: the process step must give way to the
                    # fetch tasks while it has nothing to do (see PageMessageSensor).
                    YIELD_SETTING: os.environ.get(YIELD_SETTING, "2"),
                },
            )
        )
        print(f"moto (S3/SQS): {endpoint}\npartner API simulator: {partner_url}/payload", flush=True)
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)

        from airflow.dag_processing.dagbag import DagBag
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        from api_poller.core.keys import processed_prefix
        from api_poller.settings import load_settings

        dag = DagBag(dag_folder=str(PROJECT_ROOT / "dags")).get_dag(names.POLLER_DAG_ID)
        conf = {
            "url": f"{partner_url}/payload",
            "concurrency": args.concurrency,
            "fetch_tasks": args.fetch_tasks,
        }
        print(f"triggering api_poller with conf {json.dumps(conf)}", flush=True)
        done = threading.Event()
        printer = threading.Thread(target=print_progress_until, args=(done, names.POLLER_DAG_ID), daemon=True)
        started = time.monotonic()
        printer.start()
        try:
            dag_run = dag.test(run_conf=conf)
        finally:
            done.set()
            printer.join()
        elapsed = time.monotonic() - started

        from api_poller.adapters.progress import load_job_progress

        settings = load_settings()
        print(json.dumps(load_job_progress(names.POLLER_DAG_ID, dag_run.run_id)))
        prefix = processed_prefix(dag_run.run_id)
        target = STATE_DIR / "output" / prefix
        copied = copy_output(S3Hook().get_conn(), settings.processed_bucket, prefix, target)
        print(f"job {dag_run.run_id}: {dag_run.state} in {elapsed:.1f}s")
        print(f"output: s3://{settings.processed_bucket}/{prefix} ({copied} files, copied to {target})")
        print(f"task logs: {airflow_home / 'logs'}")
        return 0 if str(dag_run.state) == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
