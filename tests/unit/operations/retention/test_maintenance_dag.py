"""The maintenance DAG purges exactly the expired job status, raw leftovers and nothing else.

The test runs ``api_poller_maintenance`` with ``dag.test()`` against moto and the session's
Airflow database, holding poller runs of different ages (created through Airflow's ORM and
back-dated) and a run of another DAG. Times are aged from the run's ``as_of`` Param, so S3
objects written a second apart can be on either side of the retention cutoff.
"""

from __future__ import annotations

import time
from pathlib import Path

from api_poller import names
from api_poller.operations.retention.expiry import has_status, job_expired
from tests.helpers import DEAD_LETTER_QUEUE, PROCESSED_BUCKET, RAW_BUCKET, AwsClients, load_dag, task_states
from tests.unit.operations.retention.seeding import (
    DAY,
    HOUR,
    POLLER_XCOMS,
    boundary_between_writes,
    make_run,
    put_object,
    send_dead_letter,
    sync_dags_to_db,
    visible_messages,
    xcom_counts,
)


def test_maintenance_dag_removes_exactly_what_expired(airflow_db: Path, aws: AwsClients) -> None:
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    # S3 and SQS: raw leftovers on both sides of the cutoff, one dead letter.
    aws.s3.create_bucket(Bucket=RAW_BUCKET)
    aws.s3.create_bucket(Bucket=PROCESSED_BUCKET)
    for key in ("jobs/old/raw/page-000001.json", "jobs/old/raw/page-000002.json", "jobs/old/readme.txt"):
        put_object(aws.s3, RAW_BUCKET, key)
    put_object(aws.s3, PROCESSED_BUCKET, "jobs/old/records/page-000000.ndjson")
    # A source job published before the cutoff: its per-page records go, its marker stays.
    put_object(aws.s3, PROCESSED_BUCKET, "jobs/published/records/page-000000.ndjson")
    put_object(aws.s3, PROCESSED_BUCKET, "jobs/published/_published.json")
    dlq = aws.sqs.create_queue(QueueName=DEAD_LETTER_QUEUE, Attributes={"MessageRetentionPeriod": "345600"})
    send_dead_letter(aws.sqs, dlq["QueueUrl"], "retention__old", "page-000002")
    boundary = boundary_between_writes()
    put_object(aws.s3, RAW_BUCKET, "jobs/recent/raw/page-000001.json")
    put_object(aws.s3, PROCESSED_BUCKET, "jobs/just_published/records/page-000000.ndjson")
    put_object(aws.s3, PROCESSED_BUCKET, "jobs/just_published/_published.json")
    as_of = boundary + 3 * DAY  # so the cutoff (as_of - 3 days) falls between the two writes

    # The metadata database: poller runs of every age, and an old run of another DAG.
    stamp = f"{time.time_ns()}"
    runs = {
        f"retention__old_{stamp}": (as_of - 10 * DAY, as_of - 10 * DAY + HOUR),
        f"retention__ended_before_{stamp}": (as_of - 4 * DAY, as_of - 3 * DAY - 2 * HOUR),
        f"retention__across_{stamp}": (as_of - 3 * DAY - HOUR, as_of - 3 * DAY + HOUR),
        f"retention__recent_{stamp}": (as_of - DAY, as_of - DAY + HOUR),
        f"retention__running_{stamp}": (as_of - 2 * DAY, None),
    }
    old, ended_before, across, recent, running = runs
    other_dag, other_run = names.MAINTENANCE_DAG_ID, f"retention__other_dag_{stamp}"
    sync_dags_to_db()
    with create_session() as session:
        for run_id, (first, end) in runs.items():
            make_run(session, names.POLLER_DAG_ID, run_id, first, end, POLLER_XCOMS)
        make_run(
            session,
            other_dag,
            other_run,
            as_of - 10 * DAY,
            as_of - 10 * DAY + HOUR,
            [(names.PURGE_STATUS_TASK, names.RETURN_VALUE_KEY)],
        )
        before = xcom_counts(session, names.POLLER_DAG_ID, list(runs))
        tis_before = session.scalar(select(func.count()).where(TaskInstance.run_id.in_(list(runs))))
        # db clean ages XComs by their own timestamp: a plain cutoff would split the run across it.
        split = session.scalar(
            select(func.count()).where(XComModel.run_id == across, XComModel.timestamp < as_of - 3 * DAY)
        )
    assert before == dict.fromkeys(runs, len(POLLER_XCOMS))
    assert 0 < split < len(POLLER_XCOMS)

    dag_run = load_dag(names.MAINTENANCE_DAG_ID).test(
        run_conf={"as_of": as_of.isoformat(), "retention_days": 3}
    )

    assert str(dag_run.state) == "success", task_states(dag_run)
    with create_session() as session:
        after = xcom_counts(session, names.POLLER_DAG_ID, list(runs))
        other_after = xcom_counts(session, other_dag, [other_run])
        remaining_runs = session.scalars(
            select(DagRun.run_id).where(DagRun.run_id.in_([*runs, other_run]))
        ).all()
        tis_after = session.scalar(select(func.count()).where(TaskInstance.run_id.in_(list(runs))))
        reports = {
            row.task_id: XComModel.deserialize_value(row)
            for row in session.execute(
                select(XComModel.task_id, XComModel.value).where(
                    XComModel.dag_id == names.MAINTENANCE_DAG_ID,
                    XComModel.run_id == dag_run.run_id,
                    XComModel.key == names.RETURN_VALUE_KEY,
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
    assert other_after == {other_run: 1}  # another DAG's old XComs are not touched
    assert sorted(remaining_runs) == sorted([*runs, other_run])  # no DAG run is deleted
    assert tis_after == tis_before > 0  # nor any task instance
    purge = reports[names.PURGE_STATUS_TASK]
    assert purge["purged_before"] == (as_of - 3 * DAY - HOUR).isoformat()
    # Other tests of this session may leave unfinished runs of their own: look at this test's runs.
    assert [run for run in purge["held_back_by"] if run.startswith("retention__")] == [across]
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
    assert (expired[ended_before] or "").startswith(f"job {ended_before} expired")
    assert [expired[run_id] for run_id in (across, recent, running)] == [None, None, None]

    # Raw leftovers: only the old raw pages are gone. Processed records stay, except those of a
    # source job published before the cutoff (its snapshot holds them).
    assert aws.keys(RAW_BUCKET) == ["jobs/old/readme.txt", "jobs/recent/raw/page-000001.json"]
    assert aws.keys(PROCESSED_BUCKET) == [
        "jobs/just_published/_published.json",
        "jobs/just_published/records/page-000000.ndjson",
        "jobs/old/records/page-000000.ndjson",
        "jobs/published/_published.json",
    ]
    assert reports[names.REMOVE_RAW_LEFTOVERS_TASK]["deleted"] == 2
    assert reports[names.REMOVE_PUBLISHED_RECORDS_TASK]["jobs"] == ["published"]
    assert reports[names.EXPIRE_SNAPSHOTS_TASK] == []  # the shipped sources folder is empty

    # Dead letters: reported, still there and visible.
    [dead_letter] = reports[names.REPORT_DEAD_LETTERS_TASK]["expiring"]
    assert (dead_letter["job_id"], dead_letter["page_id"]) == ("retention__old", "page-000002")
    assert visible_messages(aws.sqs, dlq["QueueUrl"]) == 1
