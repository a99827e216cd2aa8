"""Airflow plugin: the api_poller job API and its progress page, served by the api-server.

* ``/api-poller/jobs...``: start jobs and read their progress (see ``docs/jobs-api.md``);
* ``/api-poller/``: the progress page, listed in Airflow's navigation as "API poller".

The app is built by ``api_poller.jobs_api.app`` (``include/`` must be importable, as it is for the DAG).
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from airflow.plugins_manager import AirflowPlugin

from api_poller.jobs_api.page import NAV_NAME, PAGE_ROUTE, PAGE_TITLE, PLUGIN_NAME, URL_PREFIX

if TYPE_CHECKING:
    from fastapi import FastAPI

# A progress-bar icon for the navigation (no request needed).
ICON = (
    "data:image/svg+xml,"
    "%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 24 24' fill='none' stroke='%2338a169' "
    "stroke-width='2'%3E%3Crect x='2' y='8' width='20' height='8' rx='4'/%3E"
    "%3Crect x='4' y='10' width='10' height='4' rx='2' fill='%2338a169'/%3E%3C/svg%3E"
)


def _base_path() -> str:
    """The path of Airflow's ``[api] base_url`` ("" when Airflow is served at the root)."""
    from airflow.configuration import conf

    return urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")


@cache
def _jobs_app() -> FastAPI:
    # Built on first use: every Airflow process that loads plugins (task runners included)
    # imports this module, but only the api-server mounts the app.
    from api_poller.jobs_api.app import create_app

    return create_app()


class ApiPollerPlugin(AirflowPlugin):
    name = PLUGIN_NAME
    external_views = [
        {
            "name": NAV_NAME,
            "href": f"{_base_path()}{URL_PREFIX}/",
            "url_route": PAGE_ROUTE,
            "destination": "nav",
            "icon": ICON,
        }
    ]

    # A property, so the app is built on first use; the base class declares a plain list attribute.
    @property
    def fastapi_apps(self) -> list[dict[str, object]]:  # type: ignore[override]
        return [{"app": _jobs_app(), "url_prefix": URL_PREFIX, "name": PAGE_TITLE}]
