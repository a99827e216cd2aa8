"""The job API app on the test session's SQLite Airflow database, with authentication overridden.

Routes run as in the api-server (FastAPI's TestClient, Airflow's session dependency, Airflow's
trigger and clear functions); only who the user is, which DAGs they may use (``AllowedDags``) and
the SQS client (moto, in process) are supplied by the tests. Authentication itself is tested
against a real Airflow (integration).

The database holds the ``api_poller`` DAG and a source DAG, ``api_poller__demo``, built by the
DAG factory from ``DEMO_SOURCE`` as the dag-processor would.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from fastapi import Request
from moto import mock_aws

from api_poller.aws.clients import SqsClient
from api_poller.settings import PollerSettings

USER = "tester"
SETTINGS = PollerSettings(url_allowlist="127.0.0.1")
DEMO_DAG_ID = "api_poller__demo"
DEMO_SOURCE = """\
name: demo
connection_id: demo_api
path: /cursor/items
records: items
params: {status: all}
overridable_params: [status]
paginator: {type: cursor, cursor_path: next_cursor, cursor_param: cursor}
"""


@dataclass
class AllowedDags:
    """The auth manager's answer in these tests: which DAGs the user may read and start runs of
    (None: every DAG)."""

    readable: set[str] | None = None
    startable: set[str] | None = None
    asked: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass
class JobsApi:
    client: object  # fastapi.testclient.TestClient
    sqs: SqsClient
    queue: str
    dead_letters: str
    settings: PollerSettings
    allowed: AllowedDags


@pytest.fixture(scope="session")
def poller_dag_in_db(airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The api_poller DAG and the demo source's DAG serialized into the database, as the
    dag-processor would leave them (the factory reads the sources folder while parsing)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db

    sources = tmp_path_factory.mktemp("sources")
    (sources / "demo.yaml").write_text(DEMO_SOURCE)
    manager = DagBundlesManager()
    manager.sync_bundles_to_db()
    bundle = manager.get_bundle("dags-folder")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("API_POLLER_SOURCES_FOLDER", str(sources))
        bag = BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name)
    assert DEMO_DAG_ID in bag.dags, bag.import_errors
    sync_bag_to_db(bag, bundle.name, None)
    assert "API_POLLER_SOURCES_FOLDER" not in os.environ


@pytest.fixture
def jobs_api(poller_dag_in_db: None) -> Iterator[JobsApi]:
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi import HTTPException
    from fastapi.testclient import TestClient

    from api_poller.jobs_api import dependencies
    from api_poller.jobs_api.app import create_app

    user = SimpleAuthManagerUser(username=USER, role="admin")
    allowed = AllowedDags()

    class TestAccess(dependencies.DagAccess):
        def require(self, method, entity, dag_id):
            allowed.asked.append((method, str(entity.value), dag_id))
            permitted = allowed.readable if method == "GET" else allowed.startable
            if permitted is not None and dag_id not in permitted:
                raise HTTPException(403, "Forbidden")

        def readable_dag_ids(self):
            from airflow.models.dag import DagModel
            from airflow.utils.session import create_session
            from sqlalchemy import select

            with create_session() as session:
                every = set(session.scalars(select(DagModel.dag_id)))
            return every if allowed.readable is None else every & allowed.readable

    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        dead_letters = sqs.create_queue(QueueName=SETTINGS.dead_letter_queue_name)["QueueUrl"]
        queue = sqs.create_queue(QueueName=SETTINGS.queue_name)["QueueUrl"]

        def test_access(request: Request) -> dependencies.DagAccess:
            return TestAccess(request, user)

        app = create_app()
        app.dependency_overrides.update(
            {
                dependencies.get_dag_access: test_access,
                get_user: lambda: user,
                dependencies.optional_user: lambda: user,
                dependencies.get_settings: lambda: SETTINGS,
                dependencies.get_sqs_client: lambda: sqs,
            }
        )
        # A bearer token as API clients send (the user it names is the overridden one).
        with TestClient(app, headers={"Authorization": "Bearer a-token"}) as client:
            yield JobsApi(client, sqs, queue, dead_letters, SETTINGS, allowed)
