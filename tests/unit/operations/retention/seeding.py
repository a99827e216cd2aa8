"""What the retention tests purge, built for real: S3 objects and dead letters on either side of a
moment (moto), and poller runs of given ages with their XComs in the session's Airflow database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from api_poller import names
from api_poller.aws.clients import S3Client, SqsClient
from tests.helpers import RAW_BUCKET, wait_until

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
HOUR, DAY = timedelta(hours=1), timedelta(days=1)

# What one finished poller run leaves: (task id, XCom key).
POLLER_XCOMS = [
    (names.PLAN_TASK, names.JOB_KEY),
    (names.PLAN_TASK, names.TOTAL_PAGES_KEY),
    (names.PLAN_TASK, names.RETURN_VALUE_KEY),
    (names.FETCH_TASK, names.STATUS_KEY),
    (names.FETCH_TASK, names.RETURN_VALUE_KEY),
    (names.PREPARE_RESOURCES_TASK, names.RETURN_VALUE_KEY),
    (names.CONSUME_TASK_ID, names.STATUS_KEY),
    (names.REPORT_TASK, names.RECONCILIATION_KEY),
    (names.REPORT_TASK, names.SUMMARY_KEY),
]


# -- S3 and SQS (moto) ----------------------------------------------------------------------------


def put_object(s3: S3Client, bucket: str, key: str) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=b"{}")


def boundary_between_writes() -> datetime:
    """A moment after everything written so far and before anything written next.

    S3 stamps ``LastModified`` in whole seconds (cut, not rounded), SQS its ``SentTimestamp`` in
    milliseconds: what was written before now is stamped before now, and waiting for the clock to
    reach the next whole second makes whatever is written next stamped after the moment returned.
    """
    boundary = datetime.now(UTC)
    next_second = boundary.replace(microsecond=0) + timedelta(seconds=1)
    wait_until(
        lambda: datetime.now(UTC) >= next_second,
        timeout=5,
        message=f"the clock reached {next_second.isoformat()}",
        interval=0.01,
    )
    return boundary


def send_dead_letter(sqs: SqsClient, url: str, job_id: str, page_id: str) -> None:
    from api_poller.aws.messaging import PagePointer, message_attributes, message_body

    pointer = PagePointer(job_id, page_id, RAW_BUCKET, f"jobs/{job_id}/raw/{page_id}.json", 0, 100)
    sqs.send_message(
        QueueUrl=url, MessageBody=message_body(pointer), MessageAttributes=message_attributes(pointer)
    )


def visible_messages(sqs: SqsClient, url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


# -- Airflow's metadata database ------------------------------------------------------------------


def sync_dags_to_db() -> None:
    """Serialize the project's DAGs into the session's database, as the dag-processor would."""
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


def make_run(
    session: Session,
    dag_id: str,
    run_id: str,
    first: datetime,
    end: datetime | None,
    xcoms: list[tuple[str, str]],
) -> None:
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


def xcom_counts(session: Session, dag_id: str, run_ids: list[str]) -> dict[str, int]:
    """XComs left per run (0 for a run with none)."""
    from airflow.models.xcom import XComModel
    from sqlalchemy import func, select

    rows = session.execute(
        select(XComModel.run_id, func.count())
        .where(XComModel.dag_id == dag_id, XComModel.run_id.in_(run_ids))
        .group_by(XComModel.run_id)
    )
    return {run_id: 0 for run_id in run_ids} | {run_id: count for run_id, count in rows.all()}
