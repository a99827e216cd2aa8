"""Retention: the maintenance DAG purges exactly the expired job status, raw leftovers and nothing else.

The DAG test runs ``api_poller_maintenance`` with ``dag.test()`` against moto and the session's
Airflow database, holding api_poller runs of different ages (created through Airflow's ORM and
back-dated) and a run of another DAG. Times are aged from the run's ``as_of`` Param, so S3
objects written a second apart can be on either side of the retention cutoff.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from api_poller.operations.retention import (
    BLOCKED_DB_URL,
    AirflowCliStatusStore,
    MetadataDbUnavailable,
    MwaaCli,
    RunSpan,
    expiring_dead_letters,
    job_expired,
    metadata_db_environment,
    parse_db_clean_rows,
    parse_list_runs,
    purge_cutoff,
    purge_expired_status,
    remove_expired_raw_payloads,
    sqlalchemy_url,
)
from tests.helpers import DEAD_LETTER_QUEUE, PROCESSED_BUCKET, RAW_BUCKET, ROOT, load_dag, task_states

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
HOUR, DAY = timedelta(hours=1), timedelta(days=1)

# -- job_expired -------------------------------------------------------------------------------


def test_a_job_whose_status_was_purged_after_the_retention_has_expired():
    message = job_expired("manual__x", T0 - 4 * DAY, status_present=False, retention_days=3, now=T0)
    assert message == (
        "job manual__x expired: its status was purged after 3 days (the job ended 2026-11-24 12:00 UTC)"
    )
    assert "after 1 day " in job_expired("j", T0 - 2 * DAY, False, retention_days=1, now=T0)


@pytest.mark.parametrize(
    ("end_date", "status_present"),
    [
        (T0 - 4 * DAY, True),  # ended long ago, status not purged yet: serve it
        (T0 - 2 * DAY, False),  # ended recently without any status (failed before planning)
        (None, False),  # still running
    ],
)
def test_a_job_is_not_expired_while_its_status_can_still_be_there(end_date, status_present):
    assert job_expired("j", end_date, status_present, retention_days=3, now=T0) is None


# -- the cutoff never splits a run -------------------------------------------------------------


def span(run_id, first, end=None):
    return RunSpan(run_id, "success" if end is not None else "running", first, end)


@pytest.mark.parametrize(
    ("runs", "expected_before", "expected_holders"),
    [
        ([], T0, []),
        ([span("done", T0 - 2 * DAY, T0 - DAY), span("later", T0 + HOUR, T0 + 2 * HOUR)], T0, []),
        # a run in progress at the cutoff keeps all of its XComs: the cutoff moves to its start
        ([span("across", T0 - HOUR, T0 + HOUR)], T0 - HOUR, ["across"]),
        # ... and a run overlapping that one is kept too
        (
            [span("across", T0 - HOUR, T0 + HOUR), span("overlap", T0 - 3 * HOUR, T0 - HOUR / 2)],
            T0 - 3 * HOUR,
            ["overlap", "across"],
        ),
        # a run still running since before the cutoff holds it back at its start
        ([span("stuck", T0 - 5 * DAY), span("old", T0 - 6 * DAY, T0 - 5.5 * DAY)], T0 - 5 * DAY, ["stuck"]),
        # a run ending exactly at the cutoff has an XCom at the cutoff, which db clean keeps
        ([span("edge", T0 - HOUR, T0)], T0 - HOUR, ["edge"]),
    ],
)
def test_purge_cutoff_moves_back_to_the_start_of_any_run_spanning_it(runs, expected_before, expected_holders):
    before, holders = purge_cutoff(runs, T0)
    assert before == expected_before
    assert [run.run_id for run in holders] == expected_holders
    for run in runs:  # every run is either entirely before the cutoff or entirely kept
        assert (run.end_date is not None and run.end_date < before) or run.first_activity >= before


def test_run_span_starts_at_the_earliest_time_known_and_is_open_until_finished():
    queued = RunSpan.from_fields("r", "queued", run_after="2026-11-28T10:00:00+00:00")
    assert queued.first_activity == T0 - 2 * HOUR and queued.end_date is None
    done = RunSpan.from_fields("r", "failed", run_after=T0, start_date=T0 - HOUR, end_date=T0 + HOUR)
    assert (done.first_activity, done.end_date) == (T0 - HOUR, T0 + HOUR)
    never_ran = RunSpan.from_fields("r", "success", run_after=T0, end_date=None)
    assert never_ran.end_date == T0


# -- through Airflow's CLI (Amazon MWAA's CLI endpoint) ---------------------------------------

LIST_RUNS_OUTPUT = """\
2026-11-28T02:04:18.983433Z [warning  ] Could not import graphviz. [py.warnings]
[{"dag_id": "api_poller", "run_id": "old", "state": "success", "run_after": "2026-11-20T10:00:00+00:00",
  "logical_date": "", "start_date": "2026-11-20T10:00:01+00:00", "end_date": "2026-11-20T10:30:00+00:00"},
 {"dag_id": "api_poller", "run_id": "across", "state": "success", "run_after": "2026-11-25T11:00:00+00:00",
  "logical_date": "", "start_date": "2026-11-25T11:00:01+00:00", "end_date": "2026-11-25T13:00:00+00:00"},
 {"dag_id": "api_poller", "run_id": "now", "state": "running", "run_after": "2026-11-28T11:00:00+00:00",
  "logical_date": "", "start_date": "2026-11-28T11:00:01+00:00", "end_date": ""}]
"""
DB_CLEAN_OUTPUT = "\nChecking table xcom\nFound 18 rows meeting deletion criteria.\nPerforming Delete...\n"


def test_the_purge_through_mwaas_cli_endpoint_lists_runs_then_runs_db_clean():
    commands = []

    def post(url, body, headers):
        commands.append((url, body.decode(), headers["Authorization"]))
        output = LIST_RUNS_OUTPUT if body.startswith(b"dags list-runs") else DB_CLEAN_OUTPUT
        return {"stdout": base64.b64encode(output.encode()).decode(), "stderr": ""}

    client = SimpleNamespace(
        create_cli_token=lambda Name: {"CliToken": "t0k", "WebServerHostname": Name + ".host"}
    )
    store = AirflowCliStatusStore(MwaaCli(client, "my-env", post=post))
    report = purge_expired_status(store, as_of=T0, retention_days=3)

    assert [c[0] for c in commands] == ["https://my-env.host/aws_mwaa/cli"] * 2
    assert {c[2] for c in commands} == {"Bearer t0k"}
    assert commands[0][1] == "dags list-runs api_poller -o json"
    assert commands[1][1] == (
        "db clean --clean-before-timestamp 2026-11-25T11:00:00+00:00 --tables xcom --dag-ids api_poller"
        " --skip-archive --yes --error-on-cleanup-failure"
    )
    assert report["xcom_rows"] == 18
    assert report["runs_ended_before"] == 1
    assert report["held_back_by"] == ["across"]
    assert report["cutoff"] == "2026-11-25T12:00:00+00:00"


def test_unexpected_cli_output_is_an_error_not_a_silent_no_op():
    with pytest.raises(RuntimeError, match="no run list"):
        parse_list_runs("DAG: api_poller does not exist in 'dag' table")
    with pytest.raises(RuntimeError, match="unexpected output"):
        parse_db_clean_rows("Table xcom not found.  Skipping.")
    assert parse_list_runs("[]") == []


# -- reaching the metadata database from a task ------------------------------------------------


def test_the_purge_process_gets_the_database_from_the_connection_when_the_worker_is_blocked():
    blocked = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": BLOCKED_DB_URL,
        "AIRFLOW__CORE__SQL_ALCHEMY_CONN": BLOCKED_DB_URL,
        "OTHER": "kept",
    }
    env = metadata_db_environment(blocked, "postgresql+psycopg2://airflow@db/airflow")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == "postgresql+psycopg2://airflow@db/airflow"
    assert "AIRFLOW__CORE__SQL_ALCHEMY_CONN" not in env and env["OTHER"] == "kept"

    with pytest.raises(MetadataDbUnavailable, match="API_POLLER_METADATA_DB_CONN_ID"):
        metadata_db_environment(blocked)
    with_cmd = {**blocked, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD": "cat /run/secrets/db"}
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in metadata_db_environment(with_cmd)
    unblocked = {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "sqlite:////tmp/a.db"}
    assert metadata_db_environment(unblocked) == unblocked


@pytest.mark.parametrize(
    ("uri", "extra", "expected"),
    [
        (
            "postgresql+psycopg2://u:p%40ss@db:5432/airflow",
            None,
            "postgresql+psycopg2://u:p%40ss@db:5432/airflow",
        ),
        ("postgres://u:p@db:5432/airflow", None, "postgresql://u:p@db:5432/airflow"),
        ("sqlite:////srv/airflow/airflow.db", None, "sqlite:////srv/airflow/airflow.db"),
        ("aws://", {"sql_alchemy_conn": "mysql://x@y/z"}, "mysql://x@y/z"),
    ],
)
def test_sqlalchemy_url_of_a_connection(uri, extra, expected):
    from airflow.models.connection import Connection

    connection = Connection(conn_id="metadata_db", uri=uri)
    if extra:
        connection.set_extra(json.dumps(extra))
    assert sqlalchemy_url(connection) == expected


# -- raw payloads and dead letters against moto ------------------------------------------------


def _put(s3, bucket, key):
    s3.put_object(Bucket=bucket, Key=key, Body=b"{}")


def _boundary_between_writes():
    """A time strictly between what was written before and after (S3 LastModified has 1 s steps)."""
    time.sleep(1.1)
    boundary = datetime.now(UTC)
    time.sleep(1.1)
    return boundary


def test_raw_cleanup_deletes_only_old_raw_pages_and_error_notes(aws):
    aws.s3.create_bucket(Bucket=RAW_BUCKET)
    for key in (
        "jobs/a/raw/page-000001.json",
        "jobs/a/raw/page-000002.json",
        "jobs/a/errors/page-000002.json",
        "jobs/a/notes.txt",
        "x/raw.json",
    ):
        _put(aws.s3, RAW_BUCKET, key)
    boundary = _boundary_between_writes()
    _put(aws.s3, RAW_BUCKET, "jobs/b/raw/page-000001.json")

    dry = remove_expired_raw_payloads(aws.s3, RAW_BUCKET, cutoff=boundary, dry_run=True)
    assert (dry["expired"], dry["deleted"], dry["kept_recent"]) == (3, 0, 1)
    assert len(aws.keys(RAW_BUCKET)) == 6

    report = remove_expired_raw_payloads(aws.s3, RAW_BUCKET, cutoff=boundary)
    assert (report["deleted"], report["raw_pages"], report["error_notes"]) == (3, 2, 1)
    assert report["jobs"] == {"a": 3}
    assert aws.keys(RAW_BUCKET) == ["jobs/a/notes.txt", "jobs/b/raw/page-000001.json", "x/raw.json"]


def _send_dead_letter(sqs, url, job_id, page_id):
    from api_poller.aws.messaging import PagePointer, message_attributes, message_body

    pointer = PagePointer(job_id, page_id, RAW_BUCKET, f"jobs/{job_id}/raw/{page_id}.json", 0, 100)
    sqs.send_message(
        QueueUrl=url, MessageBody=message_body(pointer), MessageAttributes=message_attributes(pointer)
    )


def _visible(sqs, url) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def test_dead_letters_close_to_the_queue_retention_are_reported_and_left_visible(aws):
    url = aws.sqs.create_queue(QueueName=DEAD_LETTER_QUEUE, Attributes={"MessageRetentionPeriod": "345600"})[
        "QueueUrl"
    ]
    _send_dead_letter(aws.sqs, url, "manual__old", "page-000003")
    boundary = _boundary_between_writes()
    _send_dead_letter(aws.sqs, url, "manual__new", "page-000007")

    # Four days' retention, a margin of one day: as of boundary + 3 days only the first is due.
    report = expiring_dead_letters(aws.sqs, url, now=boundary + 3 * DAY, margin=DAY)

    assert (report["retention_hours"], report["margin_hours"], report["peeked"]) == (96.0, 24.0, 2)
    [entry] = report["expiring"]
    assert (entry["job_id"], entry["page_id"]) == ("manual__old", "page-000003")
    assert entry["raw_key"] == "jobs/manual__old/raw/page-000003.json"
    assert 72.0 <= entry["age_hours"] <= 72.1 and 23.9 <= entry["expires_in_hours"] <= 24.0
    assert _visible(aws.sqs, url) == 2  # nothing deleted, nothing left hidden


# -- the maintenance DAG on a real Airflow database --------------------------------------------

POLLER_XCOMS = [
    ("plan", "job"),
    ("plan", "total_pages"),
    ("plan", "return_value"),
    ("fetch_pages", "page_status"),
    ("fetch_pages", "return_value"),
    ("prepare_resources", "return_value"),
    ("process.consume_page_messages", "page_status"),
    ("report", "reconciliation"),
    ("report", "summary"),
]


def _sync_dags_to_db():
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db

    manager = DagBundlesManager()
    manager.sync_bundles_to_db()
    bundle = manager.get_bundle("dags-folder")
    sync_bag_to_db(
        BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name),
        bundle.name,
        None,
    )


def _make_run(session, dag_id, run_id, first, end, xcoms):
    """A DAG run that ran from ``first`` to ``end`` (None: still running), with XComs written meanwhile."""
    from airflow.models.dagrun import DagRun
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.models.xcom import XComModel
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType
    from sqlalchemy import update

    dag = SerializedDagModel.get_dag(dag_id, session=session)
    dag.create_dagrun(
        run_id=run_id,
        run_after=first,
        run_type=DagRunType.MANUAL,
        triggered_by=DagRunTriggeredByType.TEST,
        state=DagRunState.RUNNING,
        session=session,
    )
    session.flush()
    last = end or first + HOUR
    for index, (task_id, key) in enumerate(xcoms):
        XComModel.set(key, {"n": index}, dag_id=dag_id, task_id=task_id, run_id=run_id, session=session)
        # Spread the writes over the run, as its tasks would.
        written = first + (last - first) * (index + 1) / (len(xcoms) + 1)
        session.execute(
            update(XComModel)
            .where(XComModel.dag_id == dag_id, XComModel.run_id == run_id, XComModel.key == key)
            .where(XComModel.task_id == task_id)
            .values(timestamp=written)
        )
    session.execute(
        update(DagRun)
        .where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)
        .values(
            run_after=first,
            queued_at=first,
            start_date=first,
            end_date=end,
            state=DagRunState.SUCCESS if end else DagRunState.RUNNING,
        )
    )
    session.commit()


def _xcom_counts(session, dag_id, run_ids):
    from airflow.models.xcom import XComModel
    from sqlalchemy import func, select

    rows = session.execute(
        select(XComModel.run_id, func.count())
        .where(XComModel.dag_id == dag_id, XComModel.run_id.in_(run_ids))
        .group_by(XComModel.run_id)
    )
    return {run_id: 0 for run_id in run_ids} | dict(rows.all())


def test_maintenance_dag_removes_exactly_what_expired(airflow_db, aws):
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    from api_poller.operations.retention import has_status

    # S3 and SQS: raw leftovers on both sides of the cutoff, one dead letter.
    aws.s3.create_bucket(Bucket=RAW_BUCKET)
    aws.s3.create_bucket(Bucket=PROCESSED_BUCKET)
    for key in ("jobs/old/raw/page-000001.json", "jobs/old/raw/page-000002.json", "jobs/old/readme.txt"):
        _put(aws.s3, RAW_BUCKET, key)
    _put(aws.s3, PROCESSED_BUCKET, "jobs/old/records/page-000000.ndjson")
    dlq = aws.sqs.create_queue(QueueName=DEAD_LETTER_QUEUE, Attributes={"MessageRetentionPeriod": "345600"})
    _send_dead_letter(aws.sqs, dlq["QueueUrl"], "retention__old", "page-000002")
    boundary = _boundary_between_writes()
    _put(aws.s3, RAW_BUCKET, "jobs/recent/raw/page-000001.json")
    as_of = boundary + 3 * DAY  # so the cutoff (as_of - 3 days) falls between the two writes

    # The metadata database: api_poller runs of every age, and an old run of another DAG.
    stamp = f"{time.time_ns()}"
    runs = {
        f"retention__old_{stamp}": (as_of - 10 * DAY, as_of - 10 * DAY + HOUR),
        f"retention__ended_before_{stamp}": (as_of - 4 * DAY, as_of - 3 * DAY - 2 * HOUR),
        f"retention__across_{stamp}": (as_of - 3 * DAY - HOUR, as_of - 3 * DAY + HOUR),
        f"retention__recent_{stamp}": (as_of - DAY, as_of - DAY + HOUR),
        f"retention__running_{stamp}": (as_of - 2 * DAY, None),
    }
    old, ended_before, across, recent, running = runs
    other = ("api_poller_maintenance", f"retention__other_dag_{stamp}")
    _sync_dags_to_db()
    with create_session() as session:
        for run_id, (first, end) in runs.items():
            _make_run(session, "api_poller", run_id, first, end, POLLER_XCOMS)
        _make_run(
            session,
            *other,
            as_of - 10 * DAY,
            as_of - 10 * DAY + HOUR,
            [("purge_expired_status", "return_value")],
        )
        before = _xcom_counts(session, "api_poller", list(runs))
        tis_before = session.scalar(select(func.count()).where(TaskInstance.run_id.in_(list(runs))))
        # db clean ages XComs by their own timestamp: a plain cutoff would split the run across it.
        split = session.scalar(
            select(func.count()).where(XComModel.run_id == across, XComModel.timestamp < as_of - 3 * DAY)
        )
    assert before == dict.fromkeys(runs, len(POLLER_XCOMS))
    assert 0 < split < len(POLLER_XCOMS)

    dag_run = load_dag("api_poller_maintenance").test(
        run_conf={"as_of": as_of.isoformat(), "retention_days": 3}
    )

    assert str(dag_run.state) == "success", task_states(dag_run)
    with create_session() as session:
        after = _xcom_counts(session, "api_poller", list(runs))
        other_after = _xcom_counts(session, other[0], [other[1]])
        remaining_runs = session.scalars(
            select(DagRun.run_id).where(DagRun.run_id.in_([*runs, other[1]]))
        ).all()
        tis_after = session.scalar(select(func.count()).where(TaskInstance.run_id.in_(list(runs))))
        reports = {
            row.task_id: XComModel.deserialize_value(row)
            for row in session.execute(
                select(XComModel.task_id, XComModel.value).where(
                    XComModel.dag_id == "api_poller_maintenance",
                    XComModel.run_id == dag_run.run_id,
                    XComModel.key == "return_value",
                )
            )
        }
        present = {run_id: has_status(run_id, session) for run_id in runs}
        ends = {
            run_id: session.scalar(select(DagRun.end_date).where(DagRun.run_id == run_id)) for run_id in runs
        }

    # Status: exactly the runs that ended before the cutoff lost their XComs, all of them.
    full = len(POLLER_XCOMS)
    assert after == {old: 0, ended_before: 0, across: full, recent: full, running: full}
    assert other_after == {other[1]: 1}  # another DAG's old XComs are not touched
    assert sorted(remaining_runs) == sorted([*runs, other[1]])  # no DAG run is deleted
    assert tis_after == tis_before > 0  # nor any task instance
    purge = reports["purge_expired_status"]
    assert purge["purged_before"] == (as_of - 3 * DAY - HOUR).isoformat()
    assert purge["held_back_by"] == [across]
    assert purge["xcom_rows"] >= 2 * full  # earlier tests' runs in this session may have aged out too

    # The job API's view: the purged jobs have expired, the others have not.
    expired = {
        run_id: job_expired(run_id, ends[run_id], present[run_id], retention_days=3, now=as_of)
        for run_id in runs
    }
    assert expired[old] == (
        f"job {old} expired: its status was purged after 3 days "
        f"(the job ended {as_of - 10 * DAY + HOUR:%Y-%m-%d %H:%M} UTC)"
    )
    assert expired[ended_before].startswith(f"job {ended_before} expired")
    assert [expired[run_id] for run_id in (across, recent, running)] == [None, None, None]

    # Raw leftovers: only the old raw pages are gone; the processed output is never touched.
    assert aws.keys(RAW_BUCKET) == ["jobs/old/readme.txt", "jobs/recent/raw/page-000001.json"]
    assert aws.keys(PROCESSED_BUCKET) == ["jobs/old/records/page-000000.ndjson"]
    assert reports["remove_expired_raw_payloads"]["deleted"] == 2

    # Dead letters: reported, still there and visible.
    [dead_letter] = reports["report_expiring_dead_letters"]["expiring"]
    assert (dead_letter["job_id"], dead_letter["page_id"]) == ("retention__old", "page-000002")
    assert _visible(aws.sqs, dlq["QueueUrl"]) == 1


def test_dry_run_reports_what_would_be_purged_and_changes_nothing(airflow_db):
    from airflow.utils.session import create_session

    from api_poller.operations.retention import MetadataDbStatusStore

    _sync_dags_to_db()
    run_id = f"retention__dry_{time.time_ns()}"
    with create_session() as session:
        _make_run(session, "api_poller", run_id, T0 - 400 * DAY, T0 - 399 * DAY, POLLER_XCOMS)
        report = purge_expired_status(
            MetadataDbStatusStore(session), as_of=T0 - 390 * DAY, retention_days=3, dry_run=True
        )
        assert report["xcom_rows"] == len(POLLER_XCOMS)
        assert report["command"].endswith("--dry-run")
        assert _xcom_counts(session, "api_poller", [run_id]) == {run_id: len(POLLER_XCOMS)}


# -- scripts/teardown ------------------------------------------------------------------------------


def test_teardown_stops_only_processes_of_this_checkout_and_removes_its_state(tmp_path):
    logs = tmp_path / ".local" / "logs"
    logs.mkdir(parents=True)
    (tmp_path / "test-artifacts").mkdir()
    sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
    with open(logs / "moto.log", "wb") as log:
        ours = subprocess.Popen(sleeper, stdout=log, stderr=subprocess.STDOUT)
    theirs = subprocess.Popen(sleeper, stdout=subprocess.DEVNULL, cwd=tmp_path)
    try:
        result = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "teardown"), "--root", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert ours.wait(timeout=15) is not None
        assert theirs.poll() is None  # same command, but nothing ties it to this checkout
        assert not (tmp_path / ".local").exists() and not (tmp_path / "test-artifacts").exists()
        assert f"stopped {ours.pid}" in result.stdout
    finally:
        for process in (ours, theirs):
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
