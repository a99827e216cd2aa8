"""Send a job's dead letters back for processing, then let Airflow process them again.

    python -m api_poller.operations.redrive --job-id <run id> --airflow-url http://127.0.0.1:8080 \\
        --username admin --password ...

1. moves the job's messages from the DLQ back to the processing queue (other jobs' dead letters
   stay where they are), then
2. clears ``process.consume_page_messages`` and what follows it in that DAG run through Airflow's
   REST API, so the consumer runs again, processes the redriven pages and republishes the
   statuses: their FailedToComplete becomes SuccessfullyCompleted once processing succeeds.

Fix what made the pages fail first (the processing code or the raw object), or they come back.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from api_poller import names
from api_poller.aws.messaging import change_visibility, delete_messages, message_job_id, message_page_id
from api_poller.core.keys import safe_job_id

RECEIVE_KWARGS = {"MaxNumberOfMessages": 10, "MessageAttributeNames": ["All"], "WaitTimeSeconds": 0}


def redrive_dead_letters(
    sqs_client: Any, dead_letter_queue_url: str, queue_url: str, job_id: str
) -> list[str]:
    """Move the job's dead letters to the processing queue; returns the page ids moved."""
    wanted = safe_job_id(job_id)
    moved: list[str] = []
    others: list[dict] = []
    for _ in range(1000):  # bounded: the DLQ is drained of this job's letters long before
        batch = sqs_client.receive_message(
            QueueUrl=dead_letter_queue_url, VisibilityTimeout=60, **RECEIVE_KWARGS
        ).get("Messages", [])
        if not batch:
            break
        ours = [m for m in batch if message_job_id(m) == wanted]
        others += [m for m in batch if message_job_id(m) != wanted]
        if not ours:
            break
        sqs_client.send_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "MessageBody": m["Body"], "MessageAttributes": m["MessageAttributes"]}
                for i, m in enumerate(ours)
            ],
        )
        # Delete from the DLQ only once the copy is in the processing queue: nothing is lost.
        delete_messages(sqs_client, dead_letter_queue_url, ours)
        moved += [message_page_id(m) for m in ours]
    change_visibility(sqs_client, dead_letter_queue_url, others, 0)
    return sorted(moved)


def clear_consumer_body(job_id: str) -> dict[str, Any]:
    """The body of ``POST /api/v2/dags/api_poller/clearTaskInstances`` that reruns processing."""
    return {
        "dag_run_id": job_id,
        "task_ids": [names.CONSUME_TASK_ID],
        "include_downstream": True,
        "only_failed": False,
        "reset_dag_runs": True,
        "dry_run": False,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--job-id", required=True, help="the job id (DAG run id)")
    parser.add_argument("--airflow-url", required=True, help="the api-server, e.g. http://127.0.0.1:8080")
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--aws-endpoint-url", help="for a local emulator (moto)")
    args = parser.parse_args(argv)

    import urllib.request

    import boto3

    from api_poller.aws.resources import queue_url
    from api_poller.settings import load_settings

    settings = load_settings()
    sqs = boto3.client("sqs", endpoint_url=args.aws_endpoint_url)
    moved = redrive_dead_letters(
        sqs,
        queue_url(sqs, settings.dead_letter_queue_name),
        queue_url(sqs, settings.queue_name),
        args.job_id,
    )
    print(f"moved {len(moved)} dead letters of job {args.job_id} back to the queue: {moved}")

    def call(path: str, body: dict, token: str | None = None) -> dict:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(
            args.airflow_url.rstrip("/") + path,
            data=json.dumps(body).encode(),
            headers=headers,
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    token = call("/auth/token", {"username": args.username, "password": args.password})["access_token"]
    cleared = call("/api/v2/dags/api_poller/clearTaskInstances", clear_consumer_body(args.job_id), token)
    print(f"cleared {len(cleared.get('task_instances', []))} task instances; processing runs again")
    return 0


if __name__ == "__main__":
    sys.exit(main())
