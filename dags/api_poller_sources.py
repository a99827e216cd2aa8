"""api_poller__<source>: one DAG per source file of the sources folder (the DAG factory).

Each source file (``dags/sources/*.yaml``, or ``API_POLLER_SOURCES_FOLDER``; see
docs/sources.md) becomes a DAG ``api_poller__<name>``: plan -> fetch -> process -> report, like
``api_poller``. A broken source file is left out here and reported, naming the file and the
field, as the import error of ``api_poller_source_errors.py``; it never stops the other sources.
The logic lives in ``api_poller.adapters.source_factory``; nothing here touches the network or AWS.
"""

from __future__ import annotations

from pathlib import Path

from api_poller.adapters.source_factory import source_dags
from api_poller.settings import load_settings

# Module globals: Airflow's DAG discovery finds each DAG here.
globals().update(source_dags(load_settings(), Path(__file__).resolve().parent))
