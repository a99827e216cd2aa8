"""The status purge against Airflow's metadata database, in this process or in a new one.

Airflow 3 gives task code no metadata-database access (the worker replaces
``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` by ``airflow-db-not-allowed:///``), so the maintenance
task runs the purge in a separate process given the database URL (:func:`run_purge_process`,
which starts ``python -m api_poller.operations.retention purge-status``).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import api_poller
from api_poller.operations.retention.status_purge import RunSpan
from api_poller.operations.retention.timestamps import as_utc

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

# What Airflow 3's task supervisor puts in the worker's environment instead of the database URL.
BLOCKED_DB_URL = "airflow-db-not-allowed:///"
DB_URL_VARIABLES = ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__SQL_ALCHEMY_CONN")
# The purge process prints its report on one line starting with this; everything else is its log.
REPORT_MARKER = "API_POLLER_STATUS_PURGE_REPORT "
# The folder holding the api_poller package: the purge process needs it on its path, wherever the
# deployment put the package (the dags folder on MWAA, include/ in a checkout).
PACKAGE_PARENT = Path(api_poller.__path__[0]).resolve().parent


class MetadataDbStatusStore:
    """Runs and XComs in Airflow's metadata database, for a process allowed to use it.

    The purge is ``airflow db clean``'s own implementation (``run_cleanup``), run in process.
    """

    def __init__(self, session: Session) -> None:
        self._session = session

    def run_spans(self, dag_id: str) -> list[RunSpan]:
        from airflow.models.dagrun import DagRun
        from sqlalchemy import select

        rows = self._session.execute(
            select(
                DagRun.run_id,
                DagRun.state,
                DagRun.run_after,
                DagRun.queued_at,
                DagRun.start_date,
                DagRun.end_date,
            ).where(DagRun.dag_id == dag_id)
        )
        return [
            RunSpan.from_fields(
                row.run_id,
                row.state,
                run_after=row.run_after,
                queued_at=row.queued_at,
                start_date=row.start_date,
                end_date=row.end_date,
            )
            for row in rows
        ]

    def _count(self, dag_id: str, before: datetime) -> int:
        from airflow.models.xcom import XComModel
        from sqlalchemy import func, select

        query = select(func.count()).where(XComModel.dag_id == dag_id, XComModel.timestamp < before)
        return self._session.scalar(query) or 0

    def purge_xcoms_before(self, dag_id: str, before: datetime, dry_run: bool) -> int:
        found = self._count(dag_id, before)
        if found and not dry_run:
            import pendulum
            from airflow.utils.db_cleanup import run_cleanup

            run_cleanup(
                # pendulum DateTime is a datetime subclass; run_cleanup only compares it.
                clean_before_timestamp=pendulum.instance(before),
                table_names=["xcom"],
                dag_ids=[dag_id],
                skip_archive=True,
                confirm=False,
                error_on_cleanup_failure=True,
                session=self._session,
            )
            left = self._count(dag_id, before)
            if left:
                raise RuntimeError(f"airflow db clean left {left} of {found} XComs of {dag_id} in place")
        return found


# -- reaching the database from a task (Airflow 3: no database access in task code) -------------


class MetadataDbUnavailable(RuntimeError):
    """This process cannot reach Airflow's metadata database, and nothing says how to."""


class DatabaseConnection(Protocol):
    """What is read of an Airflow connection (``airflow.sdk.Connection`` or the ORM model)."""

    @property
    def conn_type(self) -> str | None: ...

    @property
    def host(self) -> str | None: ...

    @property
    def schema(self) -> str | None: ...

    @property
    def extra_dejson(self) -> dict[str, Any]: ...

    def get_uri(self) -> str: ...


def sqlalchemy_url(connection: DatabaseConnection) -> str:
    """The SQLAlchemy URL of the metadata database held by an Airflow connection.

    ``extra.sql_alchemy_conn`` if present, else the connection's URI (``postgres://`` becomes
    ``postgresql://``; a connection defined by a SQLAlchemy URL such as
    ``postgresql+psycopg2://...`` comes back as it was given).
    """
    extra = connection.extra_dejson or {}
    if extra.get("sql_alchemy_conn"):
        return str(extra["sql_alchemy_conn"])
    if connection.conn_type == "sqlite":  # the file is the host, or the path of a sqlite:/// URI
        return f"sqlite:///{connection.host or connection.schema}"
    uri = connection.get_uri()
    return "postgresql://" + uri[len("postgres://") :] if uri.startswith("postgres://") else uri


def metadata_db_environment(environ: Mapping[str, str], database_url: str | None = None) -> dict[str, str]:
    """The environment for a process that needs the metadata database (the Airflow CLI).

    With ``database_url``, it is the database. Otherwise the inherited environment is used as it
    is, unless Airflow's task supervisor blocked it: then the ``_CMD``/``_SECRET`` forms of the
    setting are used if the deployment sets them, else :class:`MetadataDbUnavailable`.
    """
    env = dict(environ)
    if database_url:
        env[DB_URL_VARIABLES[0]] = database_url
        env.pop(DB_URL_VARIABLES[1], None)
        return env
    blocked = [name for name in DB_URL_VARIABLES if env.get(name, "").startswith(BLOCKED_DB_URL)]
    if not blocked:
        return env
    if any(env.get(f"{DB_URL_VARIABLES[0]}{suffix}") for suffix in ("_CMD", "_SECRET")):
        for name in blocked:
            del env[name]
        return env
    raise MetadataDbUnavailable(
        "Airflow 3 gives tasks no access to the metadata database (the worker's "
        f"{DB_URL_VARIABLES[0]} is {BLOCKED_DB_URL!r}), so the status purge cannot run here: set "
        "API_POLLER_METADATA_DB_CONN_ID to an Airflow connection holding the database's SQLAlchemy "
        "URL, or API_POLLER_MWAA_ENVIRONMENT on Amazon MWAA (see docs/operations.md)"
    )


def run_purge_process(
    *,
    as_of: datetime,
    retention_days: float,
    dry_run: bool,
    env: Mapping[str, str],
    timeout: float = 3600.0,
) -> dict[str, Any]:
    """Run the status purge in a new process (``python -m api_poller.operations.retention purge-status``)."""
    search_path = os.pathsep.join(filter(None, [str(PACKAGE_PARENT), env.get("PYTHONPATH")]))
    process_env = {**env, "PYTHONPATH": search_path}
    command = [
        sys.executable, "-m", "api_poller.operations.retention", "purge-status",
        "--as-of", as_utc(as_of).isoformat(),
        "--retention-days", str(retention_days),
    ]  # fmt: skip
    if dry_run:
        command.append("--dry-run")
    result = subprocess.run(
        command, env=process_env, capture_output=True, text=True, timeout=timeout, check=False
    )
    for line in (result.stdout + result.stderr).splitlines():
        if line.strip() and not line.startswith(REPORT_MARKER):
            log.info("purge-status: %s", line)
    reports = [line for line in result.stdout.splitlines() if line.startswith(REPORT_MARKER)]
    if result.returncode != 0 or not reports:
        raise RuntimeError(
            f"the status purge failed (exit code {result.returncode}): {result.stderr[-2000:].strip()}"
        )
    report: dict[str, Any] = json.loads(reports[-1][len(REPORT_MARKER) :])
    return report
