"""Where the source files are: ``sources/`` next to the DAG files, unless a setting moves it.

The default sits inside the DAGs folder so that Amazon MWAA, which syncs only that folder (and
plugins/requirements), ships the source files with the DAGs.
"""

from __future__ import annotations

from pathlib import Path

from api_poller.settings import PollerSettings

DEFAULT_SOURCES_SUBFOLDER = "sources"


def sources_folder(settings: PollerSettings, dags_folder: str | Path) -> Path:
    """The folder of source files: ``API_POLLER_SOURCES_FOLDER`` if set (a relative path is taken
    from the DAGs folder), else ``<dags_folder>/sources``. The DAG factory passes its own folder."""
    dags = Path(dags_folder)
    if not settings.sources_folder.strip():
        return dags / DEFAULT_SOURCES_SUBFOLDER
    configured = Path(settings.sources_folder.strip()).expanduser()
    return configured if configured.is_absolute() else dags / configured
