"""Alerts, lineage and metrics of source jobs, run by Airflow against the simulator and moto.

* Alerts go through the Amazon provider's SnsNotifier to moto's SNS; an SQS queue subscribed to
  the topic is the inbox the tests read (as an on-call email or a chat hook would receive them).
* Lineage: with a hook lineage reader registered (what the OpenLineage provider does), the
  collector holds the API read and the S3 prefixes written once the run is over.
* Metrics: ``airflow dags test`` in a subprocess whose Airflow is configured (environment) to send
  metrics to a listener on 127.0.0.1, so Airflow itself sets its Stats backend up, as on a worker.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from api_poller_dev.simulator import SimulatorConfig, run_in_thread

from api_poller import names
from tests.helpers import ROOT, QuietHandler, http_server, task_states

pytestmark = pytest.mark.e2e

TOPIC = "api-poller-alerts"
TOPIC_ARN = f"arn:aws:sns:us-east-1:123456789012:{TOPIC}"  # moto's default account
COMPLETE, INCOMPLETE, NO_CONNECTION = "alert_complete", "alert_incomplete", "alert_no_connection"
TOTAL, PAGE_SIZE = 60, 10
POISON_PAGE = 3  # offsets 30-39: records without their primary key, dead-lettered


def write_source(folder: Path, name: str, connection_id: str) -> None:
    document = {
        "name": name,
        "connection_id": connection_id,
        "path": "/offset/items",
        "records": "data.items",
        "primary_key": "id",
        "paginator": {"type": "offset", "page_size": PAGE_SIZE, "total_path": "meta.total"},
        "alerts": {"on": ["failed", "incomplete"], "notifier": {"type": "sns", "target_arn": TOPIC_ARN}},
    }
    # A bare `on:` key, as people write it (YAML 1.1 reads it as true; the reader takes it as `on`).
    text = yaml.safe_dump(document, sort_keys=False).replace("'on':", "on:")
    (folder / f"{name}.yaml").write_text(text)


def connection(base_url: str) -> str:
    host, port = base_url.removeprefix("http://").split(":")
    return json.dumps({"conn_type": "http", "host": host, "port": int(port), "schema": "http"})


@dataclass
class AlertSources:
    urls: dict[str, str]
    bag: Any


@pytest.fixture(scope="module")
def alert_sources(airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlertSources]:
    folder = tmp_path_factory.mktemp("alert-sources")
    quiet = {"total_records": TOTAL, "page_size": PAGE_SIZE, "latency_ms": 0, "seed": 7}
    with ExitStack() as stack, pytest.MonkeyPatch.context() as env:
        urls = {
            COMPLETE: stack.enter_context(run_in_thread(SimulatorConfig(error_rate=0, **quiet))),
            # 500s and 429s to retry, and a page whose records cannot be processed.
            INCOMPLETE: stack.enter_context(
                run_in_thread(
                    SimulatorConfig(
                        error_rate=0.2,
                        rate_limit_rate=0.3,
                        retry_after="0",
                        poison_pages=frozenset({POISON_PAGE}),
                        **quiet,
                    )
                )
            ),
        }
        for name, url in urls.items():
            write_source(folder, name, f"e2e_{name}")
            env.setenv(f"AIRFLOW_CONN_E2E_{name.upper()}", connection(url))
        write_source(folder, NO_CONNECTION, "e2e_alerts_nowhere")
        env.setenv("API_POLLER_SOURCES_FOLDER", str(folder))
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(ROOT / "dags"))
        assert not bag.import_errors, bag.import_errors
        yield AlertSources(urls, bag)


@pytest.fixture
def alert_inbox(aws, moto_endpoint: str) -> Callable[[], list[dict[str, Any]]]:
    """The SNS topic the sources alert to, with an SQS queue subscribed: read() returns what
    arrived (the SNS notifications: Subject, Message)."""
    import boto3

    sns = boto3.client("sns", endpoint_url=moto_endpoint, region_name="us-east-1")
    topic_arn = sns.create_topic(Name=TOPIC)["TopicArn"]
    assert topic_arn == TOPIC_ARN
    queue_url = aws.sqs.create_queue(QueueName="alert-inbox")["QueueUrl"]
    queue_arn = aws.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)

    def read() -> list[dict[str, Any]]:
        received: list[dict[str, Any]] = []
        while True:
            batch = aws.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = batch.get("Messages", [])
            if not messages:
                return received
            for message in messages:
                received.append(json.loads(message["Body"]))
                aws.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])

    return read


def run_source(sources: AlertSources, name: str) -> Any:
    return sources.bag.dags[names.source_dag_id(name)].test()


@pytest.fixture
def lineage_collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Airflow's real hook lineage collector, as when a lineage reader (the OpenLineage provider)
    is installed: without one, Airflow hands out a collector that drops everything."""
    from airflow.sdk import lineage, plugins_manager

    monkeypatch.setattr(
        plugins_manager, "get_hook_lineage_readers_plugins", lambda: [lineage.HookLineageReader]
    )
    lineage.get_hook_lineage_collector.cache_clear()
    yield lineage.get_hook_lineage_collector()
    lineage.get_hook_lineage_collector.cache_clear()


def test_a_complete_job_sends_no_alert_and_its_lineage_holds_the_api_and_the_output(
    alert_sources: AlertSources, alert_inbox: Callable[[], list[dict[str, Any]]], lineage_collector: Any
) -> None:
    dag_run = run_source(alert_sources, COMPLETE)

    states = task_states(dag_run)
    assert str(dag_run.state) == "success", states
    assert states[names.END_OF_JOB_TASK] == "success"
    assert alert_inbox() == []

    collected = lineage_collector.collected_assets
    inputs = {info.asset.uri for info in collected.inputs}
    outputs = {info.asset.uri for info in collected.outputs}
    job = dag_run.run_id
    from api_poller.core.keys import safe_job_id

    api = f"{alert_sources.urls[COMPLETE]}/offset/items"
    assert api in inputs  # scheme, host, port and path: no query, no credentials
    assert all("?" not in uri and "@" not in uri for uri in inputs)
    assert f"s3://api-poller-raw/jobs/{safe_job_id(job)}/raw" in outputs
    assert f"s3://api-poller-raw/jobs/{safe_job_id(job)}/raw" in inputs  # the consumer reads it
    assert f"s3://api-poller-processed/jobs/{safe_job_id(job)}/records" in outputs
    # The publish step: the job's records in, the source's snapshot out.
    assert f"s3://api-poller-processed/jobs/{safe_job_id(job)}/records" in inputs
    snapshot = f"s3://api-poller-processed/snapshots/{COMPLETE}/dt="
    assert any(uri.startswith(snapshot) and f"job={safe_job_id(job)}" in uri for uri in outputs), outputs


def test_a_job_whose_plan_fails_sends_one_alert_with_the_plan_error(
    alert_sources: AlertSources, alert_inbox: Callable[[], list[dict[str, Any]]]
) -> None:
    dag_run = run_source(alert_sources, NO_CONNECTION)

    assert str(dag_run.state) == "failed"  # the alert step does not make a failed run succeed
    assert task_states(dag_run)[names.END_OF_JOB_TASK] == "success"
    (alert,) = alert_inbox()
    assert alert["Subject"].startswith(f"api-poller: {NO_CONNECTION} job failed")
    message = alert["Message"]
    assert f"Job {dag_run.run_id} of source {NO_CONNECTION}" in message
    assert "The plan failed" in message and "connection_id" in message
    assert "Failed steps: " in message and "plan" in message
    assert f"/api-poller/jobs/{dag_run.run_id.replace(':', '%3A').replace('+', '%2B')}" in message


# -- an incomplete job, run by `airflow dags test` with metrics on ---------------------------


@dataclass
class Received:
    """What the metrics listener got: metric name -> attribute sets seen."""

    names: dict[str, list[dict[str, str]]]


@contextmanager
def otlp_listener() -> Iterator[tuple[int, Received]]:
    """An OTLP/HTTP metrics receiver on 127.0.0.1 (what an OpenTelemetry collector does)."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
        ExportMetricsServiceResponse,
    )

    received = Received({})

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            request = ExportMetricsServiceRequest.FromString(body)
            for resource in request.resource_metrics:
                for scope in resource.scope_metrics:
                    for metric in scope.metrics:
                        points = (
                            list(metric.sum.data_points)
                            + list(metric.histogram.data_points)
                            + list(metric.exponential_histogram.data_points)
                        )
                        for point in points:
                            attributes = {a.key: a.value.string_value for a in point.attributes}
                            received.names.setdefault(metric.name, []).append(attributes)
            answer = ExportMetricsServiceResponse().SerializeToString()
            self.reply(200, "application/x-protobuf", answer)

    with http_server(Handler) as port:
        yield port, received


@contextmanager
def statsd_listener() -> Iterator[tuple[int, Received]]:
    """A StatsD (UDP) listener on 127.0.0.1; tags arrive InfluxDB-style (name,tag=value)."""
    received = Received({})
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def listen() -> None:
        while not stop.is_set():
            try:
                data = sock.recv(65535)
            except TimeoutError:
                continue
            for line in data.decode().splitlines():
                name_and_tags = line.split(":", 1)[0]
                name, *tags = name_and_tags.split(",")
                received.names.setdefault(name, []).append(dict(tag.split("=", 1) for tag in tags))

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1], received
    finally:
        stop.set()
        thread.join(2)
        sock.close()


BACKENDS = [pytest.param("otel", id="opentelemetry"), pytest.param("statsd", id="statsd")]


def metrics_environment(backend: str, port: int) -> dict[str, str]:
    if backend == "otel":
        return {
            "AIRFLOW__METRICS__OTEL_ON": "True",
            "AIRFLOW__METRICS__OTEL_HOST": "127.0.0.1",
            "AIRFLOW__METRICS__OTEL_PORT": str(port),
            "AIRFLOW__METRICS__OTEL_INTERVAL_MILLISECONDS": "1000",
        }
    return {
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(port),
        "AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED": "True",
    }


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_incomplete_job_sends_one_alert_with_its_reasons_and_its_metrics_reach_airflows_backend(
    alert_sources: AlertSources, alert_inbox: Callable[[], list[dict[str, Any]]], backend: str
) -> None:
    listener = otlp_listener if backend == "otel" else statsd_listener
    with listener() as (port, received):
        started = time.monotonic()
        finished = subprocess.run(
            [sys.executable, "-m", "airflow", "dags", "test", names.source_dag_id(INCOMPLETE)],
            env={**os.environ, **metrics_environment(backend, port)},
            capture_output=True,
            text=True,
            timeout=240,
        )
        took = time.monotonic() - started
        time.sleep(0.5)  # the last datagrams / the exit export
    output = finished.stdout[-3000:] + finished.stderr[-3000:]

    (alert,) = alert_inbox()
    assert alert["Subject"].startswith(f"api-poller: {INCOMPLETE} job incomplete"), output
    message = alert["Message"]
    assert "Failed pages (1), by reason:" in message
    assert "dead-lettered after 3 receives" in message and "has no 'id'" in message
    assert "Records written: 50 of 60." in message
    assert "page-000004" in message  # offsets 30-39

    prefix = "airflow.api_poller."
    seen = {
        name.removeprefix(prefix): tags for name, tags in received.names.items() if name.startswith(prefix)
    }
    expected = {
        "pages.fetched", "bytes.fetched", "pages.failed", "pages.processed", "records.written",
        "bytes.written", "http.retries.500", "http.retries.429", "http.throttled", "jobs.incomplete",
        "job.duration",
    }  # fmt: skip
    assert expected <= set(seen), (sorted(seen), output)
    assert all(tags.get("source") == INCOMPLETE for tags in seen["pages.fetched"])
    assert seen["job.duration"][0].get("outcome") == "incomplete"
    print(f"{backend}: airflow dags test took {took:.1f} s; {len(seen)} api_poller metrics received")
