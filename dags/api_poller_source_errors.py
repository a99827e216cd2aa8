"""Reports broken source files as this file's import error (it holds no DAG of its own).

The airflow DAG factory (``api_poller_sources.py``) builds a DAG for every valid source file and
leaves broken ones out. This file raises one error naming every broken file and field, which
Airflow shows as an import error (UI banner, ``airflow dags list-import-errors``). It is a file of
its own because an import error marks every DAG of its file stale: the valid sources' DAGs must
not share it (see ``api_poller.adapters.source_factory``).
"""

from __future__ import annotations

from pathlib import Path

from api_poller.adapters.source_factory import raise_for_broken_sources
from api_poller.settings import load_settings

raise_for_broken_sources(load_settings(), Path(__file__).resolve().parent)
