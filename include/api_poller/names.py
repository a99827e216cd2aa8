"""The names other parts look things up by: DAG ids, task ids and XCom keys, spelled once.

The DAG files build their tasks with these ids; the pipeline, the job API, redrive and retention
read XComs and clear tasks by them. Changing one here changes it everywhere.
"""

from __future__ import annotations

# DAGs
POLLER_DAG_ID = "api_poller"
MAINTENANCE_DAG_ID = "api_poller_maintenance"
# One DAG per source file (the DAG factory): api_poller__<source name>.
SOURCE_DAG_PREFIX = f"{POLLER_DAG_ID}__"
SOURCE_DAG_TAG = "api-poller-source"

# Tasks of the poller DAG, in the order the data flows.
PREPARE_RESOURCES_TASK = "prepare_resources"
PLAN_TASK = "plan"
FETCH_TASK = "fetch_pages"
PROCESS_GROUP = "process"
CONSUME_TASK = "consume_page_messages"
CONSUME_TASK_ID = f"{PROCESS_GROUP}.{CONSUME_TASK}"  # the full id, inside its task group
REPORT_TASK = "report"
# Source DAGs only: after report, a complete job's snapshot is published (an Asset event).
PUBLISH_TASK = "publish"
# The run's last step (a teardown): the job's outcome, its metrics, a source's alert.
END_OF_JOB_TASK = "end_of_job"
# Tasks that publish page statuses (every map index of each).
STATUS_TASK_IDS = (FETCH_TASK, CONSUME_TASK_ID)

# Tasks of the maintenance DAG (retention).
PURGE_STATUS_TASK = "purge_expired_status"
REMOVE_RAW_LEFTOVERS_TASK = "remove_expired_raw_payloads"
REPORT_DEAD_LETTERS_TASK = "report_expiring_dead_letters"
EXPIRE_SNAPSHOTS_TASK = "expire_old_snapshots"
REMOVE_PUBLISHED_RECORDS_TASK = "remove_published_page_records"

# The example consumer of source snapshots (dags/api_poller_snapshot_consumer.py).
SNAPSHOT_CONSUMER_DAG_ID = "api_poller_snapshot_consumer"

# XCom keys
RETURN_VALUE_KEY = "return_value"  # Airflow's own key for a task's return value
STATUS_KEY = "page_status"  # one task's page records: page id -> latest record
JOB_KEY = "job"  # the plan's job description (URL, totals, page size)
TOTAL_PAGES_KEY = "total_pages"  # the plan's page count, read by progress readers
SUMMARY_KEY = "summary"  # the report's job summary
RECONCILIATION_KEY = "reconciliation"  # the report's reconciliation
PLAN_ERROR_KEY = "plan_error"  # why the plan failed, in words (credential-free), for the job API
WATERMARK_KEY = "watermark"  # a source report's watermark (before, after, advanced or why not)
PUBLISHED_KEY = "published"  # the publish step's outcome (the Asset event's extra, pointer, watermark)


def source_dag_id(source_name: str) -> str:
    """The DAG id of a source: ``api_poller__<name>``."""
    return f"{SOURCE_DAG_PREFIX}{source_name}"


def source_asset_name(source_name: str) -> str:
    """The Asset name of a source's snapshots: ``api_poller__<name>`` (like its DAG id)."""
    return f"{SOURCE_DAG_PREFIX}{source_name}"


def source_of_dag(dag_id: str) -> str | None:
    """The source name of a source DAG's id, or None for any other DAG."""
    return dag_id.removeprefix(SOURCE_DAG_PREFIX) if dag_id.startswith(SOURCE_DAG_PREFIX) else None
