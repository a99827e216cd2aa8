"""The DAG factory: every source file of the sources folder becomes its own DAG.

Two DAG files use it (``dags/api_poller_sources.py`` and ``dags/api_poller_source_errors.py``):

* :func:`source_dags` builds the DAG of every valid source; a broken file is left out, never
  stopping the others.
* :func:`raise_for_broken_sources` raises :class:`BrokenSourceFiles`, one message naming every
  broken file and field, so that Airflow shows it as the import error of the file that raised.

Why two files: Airflow records import errors per Python file, and on a real dag-processor an
import error recorded for a file marks *every* DAG of that file stale (hidden, never scheduled,
``airflow/dag_processing/collection.py: _update_import_errors``). So the broken sources' error is
raised by a file that holds no DAG, and the valid sources' DAGs live in a file that never raises
for a broken source. Both read the same folder (a YAML file is read in well under a millisecond).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from api_poller.core.errors import FatalError, SourceError
from api_poller.settings import PollerSettings
from api_poller.sources.folder import sources_folder
from api_poller.sources.spec import SourceSpec, load_sources

if TYPE_CHECKING:
    from airflow.sdk import DAG


class BrokenSourceFiles(FatalError):
    """Source files that cannot become a DAG; the message names each file and field."""

    def __init__(self, folder: Path, errors: Mapping[str, SourceError]) -> None:
        lines = [f"{len(errors)} source file(s) in {folder} cannot be loaded (the other sources load):"]
        lines += [f"  {error}" for _, error in sorted(errors.items())]
        super().__init__("\n".join(lines))
        self.errors = dict(errors)


def load_source_dags(
    settings: PollerSettings, dags_folder: str | Path
) -> tuple[dict[str, DAG], dict[str, SourceError], Path]:
    """Every valid source's DAG by DAG id, every broken file's error by path, and the folder read.

    A source whose file is valid but whose DAG cannot be built (a bad schedule, say) is broken too.
    """
    from api_poller.adapters.source_dag import build_source_dag

    folder = sources_folder(settings, dags_folder)
    sources, errors = load_sources(folder)
    dags: dict[str, DAG] = {}
    for spec in sources.values():
        try:
            dag = build_source_dag(spec, settings)  # checks the source first
        except SourceError as error:
            errors[spec.file] = error
            continue
        dags[dag.dag_id] = dag
    return dags, errors, folder


def source_dags(settings: PollerSettings, dags_folder: str | Path) -> dict[str, DAG]:
    """The DAG of every valid source (broken ones are reported by the errors file)."""
    dags, _, _ = load_source_dags(settings, dags_folder)
    return dags


def checked_sources(
    settings: PollerSettings, dags_folder: str | Path
) -> tuple[dict[str, SourceSpec], dict[str, SourceError], Path]:
    """The sources that can become a DAG by name, every broken file's error by path, and the folder
    read: each file, then what its DAG needs (checked without building the DAG)."""
    from api_poller.adapters.source_dag import check_source

    folder = sources_folder(settings, dags_folder)
    sources, errors = load_sources(folder)
    valid: dict[str, SourceSpec] = {}
    for name, spec in sources.items():
        try:
            check_source(spec, settings)
        except SourceError as error:
            errors[spec.file] = error
            continue
        valid[name] = spec
    return valid, errors, folder


def broken_sources(settings: PollerSettings, dags_folder: str | Path) -> tuple[dict[str, SourceError], Path]:
    """Every broken source file's error by path (see :func:`checked_sources`)."""
    _, errors, folder = checked_sources(settings, dags_folder)
    return errors, folder


def raise_for_broken_sources(settings: PollerSettings, dags_folder: str | Path) -> None:
    """Raise BrokenSourceFiles naming every broken source file and field; nothing if all are fine."""
    errors, folder = broken_sources(settings, dags_folder)
    if errors:
        raise BrokenSourceFiles(folder, errors)


__all__ = [
    "BrokenSourceFiles",
    "SourceSpec",
    "broken_sources",
    "checked_sources",
    "load_source_dags",
    "raise_for_broken_sources",
    "source_dags",
]
