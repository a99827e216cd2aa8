"""Retention: how long a job's status and its leftovers live, and the purges that enforce it.

Three things age out, enforced by the ``api_poller_maintenance`` DAG (``API_POLLER_RETENTION_DAYS``):

* **a job's status**, the XComs of its ``api_poller`` DAG run (``page_status``, ``job``,
  ``total_pages``, ``summary``, ``return_value``, ...). They are purged with Airflow's own
  ``airflow db clean`` (table ``xcom``, DAG ``api_poller`` only). The DAG run stays, so a purged
  job is still known and :func:`job_expired` can say why its status is gone;
* **raw payloads** left in ``s3://<raw bucket>/jobs/<job>/raw/`` by pages that never completed
  (dead-lettered, refused by SQS, or a job that stopped half-way), and the consumers' error notes
  next to them (``jobs/<job>/errors/``), by their ``LastModified``;
* **dead letters**, which SQS drops after the DLQ's ``MessageRetentionPeriod``: the ones close to
  it are reported (job, page, age) while they can still be inspected or redriven.

``airflow db clean`` ages an XCom row by its own ``timestamp`` (when the task wrote it), not by
the end of its run. A plain cutoff of ``now - retention`` would therefore split a run that was in
progress at that instant (its early XComs gone, its summary kept), and could reach into a run
that has been running for longer than the retention. :func:`purge_cutoff` moves the cutoff back
to the start of any run that spans it, so a job's status is purged all at once, and only after
its run ended more than the retention ago.

Airflow 3 gives task code no metadata-database access (the worker replaces
``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` by ``airflow-db-not-allowed:///``), so the maintenance
task runs the purge in a separate process given the database URL
(:func:`purge_status_from_task`), or through Amazon MWAA's CLI endpoint.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import re
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from api_poller import names
from api_poller.aws.messaging import change_visibility

log = logging.getLogger(__name__)

POLLER_DAG_ID = names.POLLER_DAG_ID
FINISHED_RUN_STATES = frozenset({"success", "failed"})
RAW_PREFIX = "jobs/"
# What failed pages leave in the raw bucket: the raw page, and the consumers' error note.
LEFTOVER_KEY = re.compile(r"^jobs/(?P<job>[^/]+)/(?P<kind>raw|errors)/[^/]+$")
S3_DELETE_BATCH = 1000
# What Airflow 3's task supervisor puts in the worker's environment instead of the database URL.
BLOCKED_DB_URL = "airflow-db-not-allowed:///"
DB_URL_VARIABLES = ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__SQL_ALCHEMY_CONN")
REPORT_MARKER = "API_POLLER_STATUS_PURGE_REPORT "


def _days(count: float) -> str:
    return f"{count:g} day" + ("" if count == 1 else "s")


def _utc(value: datetime | str | None) -> datetime | None:
    """An aware UTC datetime from a datetime or an ISO string (naive means UTC); None for empty."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# -- a job's status: expired or not -----------------------------------------------------------


def job_expired(
    job_id: str,
    end_date: datetime | None,
    status_present: bool,
    *,
    retention_days: float,
    now: datetime | None = None,
) -> str | None:
    """Why a job's status is gone, or None when it is not an expired job.

    A job has expired when its run ended at least ``retention_days`` ago and none of its status
    XComs are left. A job still running, one whose status is still there (the purge may keep it a
    little longer, see :func:`purge_cutoff`), or one that ended recently without writing any
    status (it failed before planning) has not expired. The message suits a 410 Gone answer.
    """
    end = _utc(end_date)
    if status_present or end is None:
        return None
    now = _utc(now) or datetime.now(UTC)
    if now - end < timedelta(days=retention_days):
        return None
    return (
        f"job {job_id} expired: its status was purged after {_days(retention_days)} "
        f"(the job ended {end:%Y-%m-%d %H:%M} UTC)"
    )


def has_status(run_id: str, session: Any, dag_id: str = POLLER_DAG_ID) -> bool:
    """Whether any XCom of the job's run is left (for servers with database access, e.g. the job API)."""
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    query = select(XComModel.key).where(XComModel.dag_id == dag_id, XComModel.run_id == run_id).limit(1)
    return session.execute(query).first() is not None


# -- the status purge --------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpan:
    """When a DAG run can have written XComs: from ``first_activity`` to ``end_date``."""

    run_id: str
    state: str | None
    first_activity: datetime
    end_date: datetime | None  # None while the run is not finished

    @classmethod
    def from_fields(
        cls,
        run_id: str,
        state: str | None,
        *,
        run_after: datetime | str | None = None,
        queued_at: datetime | str | None = None,
        start_date: datetime | str | None = None,
        end_date: datetime | str | None = None,
    ) -> RunSpan:
        times = [t for t in map(_utc, (run_after, queued_at, start_date)) if t is not None]
        if not times:
            raise ValueError(f"run {run_id} has no run_after, queued_at or start_date")
        first = min(times)
        state = str(state) if state else None
        # Unfinished: open. A run marked finished without ever running has no XComs: one instant.
        end = (_utc(end_date) or first) if state in FINISHED_RUN_STATES else None
        return cls(run_id, state, first, end)


def purge_cutoff(runs: Iterable[RunSpan], cutoff: datetime) -> tuple[datetime, list[RunSpan]]:
    """The time before which every XCom of ``runs`` can be purged without splitting a run.

    Starts at ``cutoff`` and moves back to the first activity of any run that spans it (started
    before, not ended before it, or not finished), until no run does. Runs that ended before the
    result lose all their XComs; the others keep all theirs. Returns it and the runs that held it
    back.
    """
    runs = list(runs)
    before = cutoff
    holders: dict[str, RunSpan] = {}
    moved = True
    while moved:
        moved = False
        for run in runs:
            if run.first_activity < before and (run.end_date is None or run.end_date >= before):
                before = run.first_activity
                holders[run.run_id] = run
                moved = True
    return before, sorted(holders.values(), key=lambda run: run.first_activity)


class StatusStore(Protocol):
    """Where runs are listed and XComs purged: the metadata database, or Airflow's CLI."""

    def run_spans(self, dag_id: str) -> list[RunSpan]: ...

    def purge_xcoms_before(self, dag_id: str, before: datetime, dry_run: bool) -> int: ...


def db_clean_command(dag_id: str, before: datetime, dry_run: bool = False) -> list[str]:
    """``airflow db clean`` for one DAG's XComs written before ``before`` (no archive table)."""
    command = [
        "db", "clean",
        "--clean-before-timestamp", before.astimezone(UTC).isoformat(),
        "--tables", "xcom",
        "--dag-ids", dag_id,
        "--skip-archive", "--yes", "--error-on-cleanup-failure",
    ]  # fmt: skip
    return [*command, "--dry-run"] if dry_run else command


class MetadataDbStatusStore:
    """Runs and XComs in Airflow's metadata database, for a process allowed to use it.

    The purge is ``airflow db clean``'s own implementation (``run_cleanup``), run in process.
    """

    def __init__(self, session: Any) -> None:
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
        return self._session.scalar(query)

    def purge_xcoms_before(self, dag_id: str, before: datetime, dry_run: bool) -> int:
        found = self._count(dag_id, before)
        if found and not dry_run:
            from airflow.utils.db_cleanup import run_cleanup

            run_cleanup(
                clean_before_timestamp=before,
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


class AirflowCliStatusStore:
    """The same through Airflow's CLI (``dags list-runs``, ``db clean``), e.g. MWAA's CLI endpoint.

    ``run_cli`` takes a command without the leading ``airflow`` and returns its output.
    """

    def __init__(self, run_cli: Callable[[str], str]) -> None:
        self._run_cli = run_cli

    def run_spans(self, dag_id: str) -> list[RunSpan]:
        return parse_list_runs(self._run_cli(f"dags list-runs {dag_id} -o json"))

    def purge_xcoms_before(self, dag_id: str, before: datetime, dry_run: bool) -> int:
        return parse_db_clean_rows(self._run_cli(" ".join(db_clean_command(dag_id, before, dry_run))))


def parse_list_runs(output: str) -> list[RunSpan]:
    """RunSpans from ``airflow dags list-runs <dag> -o json`` output (log lines around it are ignored)."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"^\[", output, re.MULTILINE):
        try:
            runs, _ = decoder.raw_decode(output, match.start())
        except ValueError:
            continue
        if isinstance(runs, list) and all(isinstance(run, dict) and "run_id" in run for run in runs):
            return [
                RunSpan.from_fields(
                    run["run_id"],
                    run.get("state"),
                    run_after=run.get("run_after"),
                    start_date=run.get("start_date"),
                    end_date=run.get("end_date"),
                )
                for run in runs
            ]
    raise RuntimeError(f"no run list in the output of 'airflow dags list-runs': {output[-1000:]!r}")


def parse_db_clean_rows(output: str) -> int:
    """Rows ``airflow db clean`` found for its one table (its "Found N rows ..." line)."""
    found = re.findall(r"Found (\d+) rows meeting deletion criteria", output)
    if len(found) != 1 or "Traceback" in output:
        raise RuntimeError(f"unexpected output of 'airflow db clean': {output[-1000:]!r}")
    return int(found[0])


def purge_expired_status(
    store: StatusStore,
    *,
    as_of: datetime,
    retention_days: float,
    dag_id: str = POLLER_DAG_ID,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Purge the status (XComs) of the DAG's runs that ended ``retention_days`` before ``as_of``."""
    if retention_days <= 0:
        raise ValueError(f"the retention must be positive, got {retention_days} days")
    as_of = _utc(as_of)
    cutoff = as_of - timedelta(days=retention_days)
    runs = store.run_spans(dag_id)
    before, holders = purge_cutoff(runs, cutoff)
    still_running = [run for run in holders if run.end_date is None]
    for run in still_running:
        log.warning(
            "run %s of %s has not finished since %s (longer than the %s retention): the status of "
            "jobs that ended after it started is kept until it finishes",
            run.run_id,
            dag_id,
            run.first_activity.isoformat(),
            _days(retention_days),
        )
    rows = store.purge_xcoms_before(dag_id, before, dry_run)
    expired = sum(1 for run in runs if run.end_date is not None and run.end_date < before)
    log.info(
        "%s XCom rows of %s written before %s%s (%d runs ended before it; cutoff %s)",
        "would purge" if dry_run else "purged",
        dag_id,
        before.isoformat(),
        "" if before == cutoff else f", held back by {[run.run_id for run in holders]}",
        expired,
        cutoff.isoformat(),
    )
    return {
        "dag_id": dag_id,
        "retention_days": retention_days,
        "as_of": as_of.isoformat(),
        "cutoff": cutoff.isoformat(),
        "purged_before": before.isoformat(),
        "held_back_by": [run.run_id for run in holders],
        "still_running": [run.run_id for run in still_running],
        "runs_ended_before": expired,
        "xcom_rows": rows,
        "dry_run": dry_run,
        "command": "airflow " + " ".join(db_clean_command(dag_id, before, dry_run)),
    }


# -- running the purge from a task (Airflow 3: no database access in task code) ----------------


class MetadataDbUnavailable(RuntimeError):
    """This process cannot reach Airflow's metadata database, and nothing says how to."""


def sqlalchemy_url(connection: Any) -> str:
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
    package_root = str(Path(__file__).resolve().parents[1])
    env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))}
    command = [
        sys.executable, "-m", "api_poller.operations.retention", "purge-status",
        "--as-of", _utc(as_of).isoformat(),
        "--retention-days", str(retention_days),
    ]  # fmt: skip
    if dry_run:
        command.append("--dry-run")
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    for line in (result.stdout + result.stderr).splitlines():
        if line.strip() and not line.startswith(REPORT_MARKER):
            log.info("purge-status: %s", line)
    reports = [line for line in result.stdout.splitlines() if line.startswith(REPORT_MARKER)]
    if result.returncode != 0 or not reports:
        raise RuntimeError(
            f"the status purge failed (exit code {result.returncode}): {result.stderr[-2000:].strip()}"
        )
    return json.loads(reports[-1][len(REPORT_MARKER) :])


class MwaaCli:
    """Airflow CLI commands through an Amazon MWAA environment's CLI endpoint.

    MWAA's workers cannot reach the metadata database on Airflow 3; MWAA's documentation points
    to ``airflow db clean`` through this endpoint instead. Needs ``airflow:CreateCliToken`` on
    the environment. Not exercised against a real MWAA environment here.
    """

    def __init__(
        self,
        mwaa_client: Any,
        environment: str,
        post: Callable[[str, bytes, dict[str, str]], Mapping[str, Any]] | None = None,
    ) -> None:
        self._client = mwaa_client
        self._environment = environment
        self._post = post or _post_json

    def __call__(self, command: str) -> str:
        token = self._client.create_cli_token(Name=self._environment)
        answer = self._post(
            f"https://{token['WebServerHostname']}/aws_mwaa/cli",
            command.encode(),
            {"Authorization": f"Bearer {token['CliToken']}", "Content-Type": "text/plain"},
        )
        stdout = base64.b64decode(answer.get("stdout") or b"").decode(errors="replace")
        stderr = base64.b64decode(answer.get("stderr") or b"").decode(errors="replace")
        return f"{stdout}\n{stderr}"


def _post_json(url: str, body: bytes, headers: dict[str, str]) -> Mapping[str, Any]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read())


def purge_status_from_task(
    settings: Any,
    *,
    as_of: datetime,
    retention_days: float,
    dry_run: bool = False,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The maintenance task's status purge, by the route the deployment allows.

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


# -- raw payloads ------------------------------------------------------------------------------


def remove_expired_raw_payloads(
    s3_client: Any, bucket: str, *, cutoff: datetime, dry_run: bool = False
) -> dict[str, Any]:
    """Delete raw pages and error notes (``jobs/<job>/{raw,errors}/<page>.json``) older than ``cutoff``.

    Nothing else in the bucket is touched. A raw object outlives its page only when the page
    never completed (processing deletes it); an error note stays wherever processing failed once.
    """
    cutoff = _utc(cutoff)
    expired: list[tuple[str, str, str]] = []
    recent = 0
    for listing in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=RAW_PREFIX):
        for item in listing.get("Contents", []):
            match = LEFTOVER_KEY.match(item["Key"])
            if not match:
                continue
            if _utc(item["LastModified"]) < cutoff:
                expired.append((item["Key"], match["job"], match["kind"]))
            else:
                recent += 1
    errors: list[dict] = []
    if not dry_run:
        for start in range(0, len(expired), S3_DELETE_BATCH):
            batch = expired[start : start + S3_DELETE_BATCH]
            answer = s3_client.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": key} for key, *_ in batch], "Quiet": True}
            )
            errors.extend(answer.get("Errors", []))
    if errors:
        raise RuntimeError(f"{len(errors)} objects in {bucket} could not be deleted, e.g. {errors[0]}")
    jobs = Counter(job for _, job, _ in expired)
    kinds = Counter(kind for *_, kind in expired)
    log.info(
        "%s %d leftover objects in s3://%s/%s last modified before %s (%d newer kept), from %d jobs",
        "would delete" if dry_run else "deleted",
        len(expired),
        bucket,
        RAW_PREFIX,
        cutoff.isoformat(),
        recent,
        len(jobs),
    )
    return {
        "bucket": bucket,
        "cutoff": cutoff.isoformat(),
        "expired": len(expired),
        "deleted": 0 if dry_run else len(expired),
        "raw_pages": kinds["raw"],
        "error_notes": kinds["errors"],
        "kept_recent": recent,
        "jobs": dict(jobs.most_common(100)),
        "dry_run": dry_run,
    }


# -- dead letters ------------------------------------------------------------------------------


def _dead_letter_page(message: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(job id, page id, raw key) of a dead letter: from its body, else its attributes."""
    from api_poller.aws.messaging import message_job_id, message_page_id, parse_message

    try:
        pointer = parse_message(message)
        return pointer.job_id, pointer.page_id, pointer.key
    except ValueError:
        return message_job_id(message), message_page_id(message), None


def expiring_dead_letters(
    sqs_client: Any,
    queue_url: str,
    *,
    now: datetime,
    margin: timedelta,
    max_messages: int = 1000,
    visibility_timeout: int = 30,
) -> dict[str, Any]:
    """Report the dead letters SQS drops within ``margin``, without deleting any.

    Reads the queue's ``MessageRetentionPeriod``, peeks at up to ``max_messages`` messages (each
    hidden for ``visibility_timeout`` seconds meanwhile) and makes them all visible again. A
    message's age counts from its ``SentTimestamp``: SQS keeps a standard queue's original enqueue
    time when it moves a message to the DLQ, and expires it from there.
    """
    now = _utc(now)
    attributes = sqs_client.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["MessageRetentionPeriod", "ApproximateNumberOfMessages"]
    )["Attributes"]
    retention = timedelta(seconds=int(attributes["MessageRetentionPeriod"]))
    seen: list[dict] = []
    try:
        while len(seen) < max_messages:
            batch = sqs_client.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=min(10, max_messages - len(seen)),
                VisibilityTimeout=visibility_timeout,
                WaitTimeSeconds=1,
                AttributeNames=["SentTimestamp"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not batch:
                break
            seen.extend(batch)
    finally:
        change_visibility(sqs_client, queue_url, seen, 0)
    hour = timedelta(hours=1)
    expiring = []
    for message in seen:
        sent = datetime.fromtimestamp(int(message["Attributes"]["SentTimestamp"]) / 1000, UTC)
        age, left = now - sent, sent + retention - now
        if left > margin:
            continue
        job_id, page_id, raw_key = _dead_letter_page(message)
        expiring.append(
            {
                "job_id": job_id,
                "page_id": page_id,
                "message_id": message["MessageId"],
                "raw_key": raw_key,
                "sent_at": sent.isoformat(),
                "age_hours": round(age / hour, 1),
                "expires_in_hours": round(left / hour, 1),
            }
        )
    expiring.sort(key=lambda entry: entry["expires_in_hours"])
    for entry in expiring:
        log.warning(
            "dead letter of job %s, page %s (message %s) is %.1f h old; SQS drops it in %.1f h",
            entry["job_id"],
            entry["page_id"],
            entry["message_id"],
            entry["age_hours"],
            entry["expires_in_hours"],
        )
    log.info(
        "%d of %d dead letters expire within %s (queue retention %s)",
        len(expiring),
        len(seen),
        margin,
        retention,
    )
    return {
        "queue_url": queue_url,
        "retention_hours": round(retention / hour, 1),
        "margin_hours": round(margin / hour, 1),
        "messages": int(attributes.get("ApproximateNumberOfMessages", len(seen))),
        "peeked": len(seen),
        "complete": len(seen) < max_messages,
        "expiring": expiring,
    }


# -- command line: the status purge in a process that may use the metadata database ------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m api_poller.operations.retention",
        description="Purge the status (XComs) of api_poller jobs that ended more than N days ago.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    purge = commands.add_parser("purge-status", help="needs Airflow's metadata database configured")
    purge.add_argument("--retention-days", type=float, required=True)
    purge.add_argument("--as-of", type=_utc, default=None, help="ISO time to age from (default: now)")
    purge.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)

    from airflow.utils.session import create_session

    with create_session() as session:
        report = purge_expired_status(
            MetadataDbStatusStore(session),
            as_of=args.as_of or datetime.now(UTC),
            retention_days=args.retention_days,
            dry_run=args.dry_run,
        )
    print(REPORT_MARKER + json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
