"""Helpers the tests share: running the DAG and reading back what it left in S3 and SQS."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
RAW_BUCKET = "api-poller-raw"
PROCESSED_BUCKET = "api-poller-processed"
QUEUE = "api-poller-process-payload"
DEAD_LETTER_QUEUE = "api-poller-process-payload-dlq"

T = TypeVar("T")


class QuietHandler(BaseHTTPRequestHandler):
    """The request handler of a test's small HTTP server: ``reply`` answers, nothing is logged."""

    def reply(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    """Serve ``handler`` on 127.0.0.1 (a free port) in a thread until the block ends; the port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def wait_until(condition: Callable[[], T], *, timeout: float, message: str, interval: float = 0.05) -> T:
    """Call ``condition`` until it returns something truthy, and return that.

    Tests wait on what they need to have happened, never for a fixed time: this returns as soon
    as it has, and fails with ``message`` (what did not happen) once ``timeout`` seconds passed.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout:g} s: {message}")
        time.sleep(interval)


async def wait_until_async(
    condition: Callable[[], T], *, timeout: float, message: str, interval: float = 0.05
) -> T:
    """:func:`wait_until` inside a test's event loop, which goes on running meanwhile.

    ``condition`` runs in a thread, so it may block (a boto3 call, say).
    """
    deadline = time.monotonic() + timeout
    while True:
        result = await asyncio.to_thread(condition)
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout:g} s: {message}")
        await asyncio.sleep(interval)


@dataclass
class AwsClients:
    s3: Any
    sqs: Any

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        try:
            pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            return sorted(item["Key"] for page in pages for item in page.get("Contents", []))
        except self.s3.exceptions.NoSuchBucket:
            return []

    def processed_records(self, prefix: str = "jobs/") -> list[dict]:
        records = []
        for key in self.keys(PROCESSED_BUCKET, prefix):
            body = self.s3.get_object(Bucket=PROCESSED_BUCKET, Key=key)["Body"].read().decode()
            records.extend(json.loads(line) for line in body.splitlines() if line)
        return records

    def queue_depth(self, name: str) -> int:
        """Visible plus in-flight messages of a queue (0 when the queue does not exist)."""
        try:
            url = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
        except self.sqs.exceptions.QueueDoesNotExist:
            return 0
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )


def load_dag(dag_id: str = "api_poller"):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id]


def run_job(conf: dict[str, Any]):
    """Run the api_poller DAG once, in process (``dag.test``), and return its DagRun."""
    return load_dag().test(run_conf=conf)


def task_states(dag_run) -> dict[str, str]:
    from airflow.utils.session import create_session

    with create_session() as session:
        return {
            (ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"): str(ti.state)
            for ti in dag_run.get_task_instances(session=session)
        }


def fetch_task_names(dag_run) -> list[str | None]:
    """The fetch tasks' names in the UI (their rendered map_index_template), by map index."""
    from airflow.utils.session import create_session

    from api_poller import names

    with create_session() as session:
        tis = [ti for ti in dag_run.get_task_instances(session=session) if ti.task_id == names.FETCH_TASK]
        return [ti.rendered_map_index for ti in sorted(tis, key=lambda ti: ti.map_index)]


@contextmanager
def serve_in_thread(app: web.Application) -> Iterator[str]:
    """Serve an aiohttp app on 127.0.0.1 from its own loop in a daemon thread; yields its base URL."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)

    async def start() -> str:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    async def stop() -> None:
        await runner.cleanup()
        # Handlers still sleeping (the client gave up on them) are cancelled, not left pending.
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    try:
        yield asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


# Faster retries for the real-Airflow tests (the product defaults are the seed's), but status
# flushes and pokes at the product's pace: faster ones overload a 2-core api-server.
REAL_AIRFLOW_ENV = {
    "API_POLLER_RETRY_INITIAL_SECONDS": "0.05",
    "API_POLLER_PROCESS_RETRY_DELAY_SECONDS": "0",
    "API_POLLER_STATUS_FLUSH_SECONDS": "1",
    "API_POLLER_PROCESS_POKE_SECONDS": "1",
}


@contextmanager
def real_airflow_stack(
    prefix: str, simulator_args: list[str], extra_env: dict[str, str] | None = None, **airflow_options: Any
):
    """moto, the simulator and a real Airflow on a scratch PostgreSQL database, all on 127.0.0.1.

    Yields ``(airflow, partner_url, aws)`` once the ``api_poller`` DAG is parsed and unpaused.
    """
    import tempfile

    import boto3
    from api_poller_dev.local_airflow import running_airflow, scratch_postgres_database
    from api_poller_dev.local_stack import aws_connection, moto_server, simulator_server

    workdir = Path(tempfile.mkdtemp(prefix=f"api-poller-{prefix}-"))
    with (
        moto_server(workdir) as endpoint,
        simulator_server(workdir, simulator_args) as partner_url,
        scratch_postgres_database() as database_url,
        running_airflow(
            workdir / "airflow",
            database_url=database_url,
            extra_env={
                "AIRFLOW_CONN_AWS_DEFAULT": aws_connection(endpoint),
                **REAL_AIRFLOW_ENV,
                **(extra_env or {}),
            },
            **airflow_options,
        ) as airflow,
    ):
        airflow.wait_for_dag("api_poller")
        aws = AwsClients(
            boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1"),
            boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1"),
        )
        yield airflow, f"{partner_url}/payload", aws
