"""The job API app on the test session's SQLite Airflow database, with authentication overridden.

Routes run as in the api-server (FastAPI's TestClient, Airflow's session dependency, Airflow's
trigger and clear functions); only who the user is and the SQS client (moto, in process) are
supplied by the tests. Authentication itself is tested against a real Airflow (integration).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from api_poller.aws.clients import SqsClient
from api_poller.settings import PollerSettings

USER = "tester"
SETTINGS = PollerSettings(url_allowlist="127.0.0.1")


@dataclass
class JobsApi:
    client: object  # fastapi.testclient.TestClient
    sqs: SqsClient
    queue: str
    dead_letters: str
    settings: PollerSettings


@pytest.fixture(scope="session")
def poller_dag_in_db(airflow_db: Path) -> None:
    """The api_poller DAG serialized into the database, as the dag-processor would leave it."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db

    manager = DagBundlesManager()
    manager.sync_bundles_to_db()
    bundle = manager.get_bundle("dags-folder")
    bag = BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name)
    sync_bag_to_db(bag, bundle.name, None)


@pytest.fixture
def jobs_api(poller_dag_in_db: None) -> Iterator[JobsApi]:
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.testclient import TestClient

    from api_poller.jobs_api import dependencies
    from api_poller.jobs_api.app import create_app

    user = SimpleAuthManagerUser(username=USER, role="admin")
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        dead_letters = sqs.create_queue(QueueName=SETTINGS.dead_letter_queue_name)["QueueUrl"]
        queue = sqs.create_queue(QueueName=SETTINGS.queue_name)["QueueUrl"]
        app = create_app()
        allowed = {
            dependency.dependency: lambda: None
            for dependency in (
                dependencies.can_read_runs,
                dependencies.can_read_tasks,
                dependencies.can_start_runs,
            )
        }
        app.dependency_overrides.update(
            {
                **allowed,
                get_user: lambda: user,
                dependencies.optional_user: lambda: user,
                dependencies.get_settings: lambda: SETTINGS,
                dependencies.get_sqs_client: lambda: sqs,
            }
        )
        # A bearer token as API clients send (the user it names is the overridden one).
        with TestClient(app, headers={"Authorization": "Bearer a-token"}) as client:
            yield JobsApi(client, sqs, queue, dead_letters, SETTINGS)
