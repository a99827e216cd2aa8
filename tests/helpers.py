"""Helpers the tests share: running the DAG and reading back what it left in S3 and SQS."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RAW_BUCKET = "api-poller-raw"
PROCESSED_BUCKET = "api-poller-processed"
QUEUE = "api-poller-process-payload"
DEAD_LETTER_QUEUE = "api-poller-process-payload-dlq"


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
    return bag.get_dag(dag_id)


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
