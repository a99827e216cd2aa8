"""The maintenance task's status purge, by the route the deployment allows."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from api_poller.operations.retention.metadata_db import (
    metadata_db_environment,
    run_purge_process,
    sqlalchemy_url,
)
from api_poller.operations.retention.mwaa_cli import AirflowCliStatusStore, MwaaCli
from api_poller.operations.retention.status_purge import purge_expired_status

if TYPE_CHECKING:
    from api_poller.settings import PollerSettings


def purge_status_from_task(
    settings: PollerSettings,
    *,
    as_of: datetime,
    retention_days: float,
    dry_run: bool = False,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Purge the expired jobs' status from a task, which has no database access of its own.

    ``API_POLLER_MWAA_ENVIRONMENT`` set: through MWAA's CLI endpoint. Otherwise in a new process
    given the metadata database: from the connection ``API_POLLER_METADATA_DB_CONN_ID``, or the
    worker's own configuration where it is not blocked (``dag.test``, Airflow 2-style setups).
    """
    if settings.mwaa_environment:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        client = AwsBaseHook(aws_conn_id=settings.aws_conn_id, client_type="mwaa").get_conn()
        store = AirflowCliStatusStore(MwaaCli(client, settings.mwaa_environment))
        return purge_expired_status(store, as_of=as_of, retention_days=retention_days, dry_run=dry_run)
    database_url = None
    if settings.metadata_db_conn_id:
        from airflow.sdk import BaseHook

        database_url = sqlalchemy_url(BaseHook.get_connection(settings.metadata_db_conn_id))
    env = metadata_db_environment(os.environ if environ is None else environ, database_url)
    return run_purge_process(as_of=as_of, retention_days=retention_days, dry_run=dry_run, env=env)
