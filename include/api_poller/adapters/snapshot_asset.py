"""The Airflow Asset of a source's snapshots: what the publish step emits and consumers schedule on.

Name ``api_poller__<source>``, URI the source's snapshot folder
``s3://<processed bucket>/snapshots/<source>/``. One event per published snapshot, with the
extra the publish step returns under ``event`` (job id, source, snapshot and manifest locations,
records, pages, files, format, dt). See docs/output.md.
"""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import Asset

from api_poller import names
from api_poller.core.keys import s3_uri, source_snapshots_prefix
from api_poller.settings import PollerSettings


def source_asset(source_name: str, settings: PollerSettings) -> Asset:
    return Asset(
        name=names.source_asset_name(source_name),
        uri=s3_uri(settings.processed_bucket, source_snapshots_prefix(source_name)),
        group="api-poller",
    )


def source_assets(settings: PollerSettings, dags_folder: str | Path) -> list[Asset]:
    """The Assets of every source that has a DAG (valid file, valid schedule and form), by name.

    Broken sources are left out here as the DAG factory leaves them out (it reports them).
    """
    from api_poller.adapters.source_factory import checked_sources

    sources, _, _ = checked_sources(settings, dags_folder)
    return [source_asset(name, settings) for name in sorted(sources)]
