"""Airflow local settings for the poller's deployments: preload the libraries every task imports.

Airflow imports ``airflow_local_settings`` (from ``$AIRFLOW_HOME/config`` or ``PYTHONPATH``) when
each component starts. The LocalExecutor's workers are forked from the scheduler, a Celery
worker's pool from the worker, and every task process is forked from those (as are the
dag-processor's parsing processes from it): what is imported here is imported once per component,
not once per task. Each poller task process otherwise imports boto3/botocore, s3transfer and
aiohttp anew when it loads the DAG file: ~1 s of CPU per task start on a loaded 2-core machine
(bench/results/overhead.md), most of a seed job's task CPU.

Only third-party libraries, imported, never used: no client, session, thread or event loop
exists before the fork. ``[api_poller] preload_modules`` (env
``AIRFLOW__API_POLLER__PRELOAD_MODULES``; comma-separated, empty for none) overrides the list.
"""

from __future__ import annotations

import importlib
import logging

from airflow.configuration import conf

# What the DAG files and the tasks import at their top levels (the heavy part: ~90% of their time).
DEFAULT_PRELOAD_MODULES = "boto3,botocore.session,s3transfer.manager,aiohttp"

# Airflow copies every public name of this module into airflow.settings: export none.
__all__: list[str] = []


def _preload() -> None:
    names = conf.get("api_poller", "preload_modules", fallback=DEFAULT_PRELOAD_MODULES)
    for name in filter(None, (part.strip() for part in names.split(","))):
        try:
            importlib.import_module(name)
        except ImportError:
            # A component without the library (it is only a speed-up): it imports nothing more.
            logging.getLogger(__name__).warning("preload: cannot import %s", name)


_preload()
