"""api_poller_snapshot_consumer: an example downstream DAG, scheduled on the sources' snapshots.

It runs whenever a source publishes a complete snapshot (the Asset ``api_poller__<source>`` of
every source in the sources folder: any one of them triggers it), reads the snapshot's manifest
from the event's extra and logs what it found. Copy it as the start of your own consumer:
schedule on the one source you need (``api_poller.adapters.snapshot_asset.source_asset``).
Paused when created. See docs/output.md.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.sdk import AssetAny, dag, get_current_context, task

from api_poller import names
from api_poller.adapters.snapshot_asset import source_assets
from api_poller.settings import load_settings

settings = load_settings()
# Every source with a DAG (broken ones are reported by api_poller_source_errors.py).
SNAPSHOTS = source_assets(settings, Path(__file__).resolve().parent)


@dag(
    dag_id=names.SNAPSHOT_CONSUMER_DAG_ID,
    # No source, no schedule: the DAG stays as an example that can only be triggered by hand.
    schedule=AssetAny(*SNAPSHOTS) if SNAPSHOTS else None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    is_paused_upon_creation=True,
    tags=["api-poller", "example"],
    doc_md=__doc__,
)
def api_poller_snapshot_consumer() -> None:
    @task
    def read_snapshot_manifests() -> list[dict[str, Any]]:
        """Read the manifest named by each triggering snapshot event and log what it holds."""
        import logging

        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        from api_poller.output.manifest import describe_snapshot, read_manifest_at

        log = logging.getLogger(__name__)
        s3 = S3Hook(aws_conn_id=settings.aws_conn_id).get_conn()
        found = []
        for events in get_current_context()["triggering_asset_events"].values():
            for event in events:
                snapshot = describe_snapshot(read_manifest_at(s3, event.extra["manifest"]))
                log.info(
                    "snapshot of %s, job %s: %d records in %d %s files (%d bytes), fields %s",
                    snapshot["source"], snapshot["jobId"], snapshot["records"], snapshot["files"],
                    snapshot["format"], snapshot["bytes"], ", ".join(snapshot["fields"]),
                )  # fmt: skip
                found.append(snapshot)
        if not found:
            log.info("triggered without a snapshot event (by hand?): nothing to read")
        return found

    read_snapshot_manifests()


api_poller_snapshot_consumer()
