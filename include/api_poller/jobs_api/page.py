"""The progress page: a static HTML template and the configuration it needs to call the job API."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

from api_poller import names
from api_poller.core.lifecycle import PROGRESS_FIELDS

# Where the plugin mounts the job API and how Airflow's navigation lists the page.
URL_PREFIX = "/api-poller"
PLUGIN_NAME = "api_poller"  # the plugin, not the DAG
PAGE_ROUTE = "api-poller-jobs"
PAGE_TITLE = "API poller jobs"
NAV_NAME = "API poller"  # the entry in Airflow's navigation (longer names are cut there)

PAGE_TEMPLATE = Path(__file__).with_name("progress_page.html")
ACTIVE_RUN_STATES = ("queued", "running")
DEFAULT_LIST_LIMIT = 25


def run_path(dag_id: str, run_id: str) -> str:
    """The DAG run's page in the Airflow UI, relative to Airflow's base URL."""
    return f"/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def render_page(api_base: str, airflow_base: str) -> str:
    """The progress page, with where the API and the Airflow UI are."""
    config = {
        "apiBase": api_base,
        "airflowBase": airflow_base,
        "dagId": names.POLLER_DAG_ID,
        "sourceDagPrefix": names.SOURCE_DAG_PREFIX,
        "limit": DEFAULT_LIST_LIMIT,
        "activeStates": list(ACTIVE_RUN_STATES),
        "fields": PROGRESS_FIELDS,
    }
    # "<" escaped so the JSON cannot close the <script> element it sits in.
    payload = json.dumps(config).replace("<", "\\u003c")
    return PAGE_TEMPLATE.read_text(encoding="utf-8").replace("__API_POLLER_CONFIG__", payload)
