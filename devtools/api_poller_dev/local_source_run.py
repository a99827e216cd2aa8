"""Run one source file end to end on the embedded local stack (``local-sync --source FILE``).

The source file is validated (``api_poller.sources.spec.load_source``), copied alone into a
sources folder of the local state directory, and its DAG ``api_poller__<name>`` is built by the
DAG factory (``dags/api_poller_sources.py``) from there, exactly as a deployment builds it. The
DAG runs once with ``dag.test`` (every task really runs, one at a time, in this process) against
moto for S3/SQS and Airflow on SQLite; the processed records are copied to a local folder.

The source's Connection comes from the environment, never from the command line:
``AIRFLOW_CONN_<CONNECTION_ID IN UPPER CASE>``, as JSON
(``{"conn_type": "http", "host": "https://api.example", "password": "<token>"}``) or as a URI
(``http://:<url-encoded token>@api.example/https``: the URI's scheme is the connection type and
its path the scheme requests use). With
``--simulator`` the local partner-API simulator stands in for the partner: it is started with
the source's auth kind, and the Connection points at it with the simulator's own credentials.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from api_poller_dev.local_stack import simulator_server
from api_poller_dev.partner_sim.config import AuthConfig

from api_poller import names
from api_poller.core.errors import SourceError
from api_poller.sources.spec import SourceSpec, load_source

SOURCES_SETTING = "API_POLLER_SOURCES_FOLDER"


class LocalRunError(Exception):
    """What stops a local run before it starts; the message says what to do."""


def connection_variable(connection_id: str) -> str:
    """The environment variable Airflow reads the Connection from."""
    return f"AIRFLOW_CONN_{connection_id.upper()}"


def check_connection_in_environment(spec: SourceSpec, environ: dict[str, str] | os._Environ[str]) -> None:
    variable = connection_variable(spec.connection_id)
    if not environ.get(variable):
        raise LocalRunError(
            f"source {spec.name!r} reads Connection {spec.connection_id!r}: set {variable} in the "
            "environment, as JSON, e.g.\n"
            f'  export {variable}=\'{{"conn_type": "http", "host": "https://api.example", '
            f'"password": "<token>"}}\'\n'
            f"or as a URI, e.g. export {variable}='http://:<url-encoded token>@api.example/https'\n"
            "(or run against the local simulator with --simulator)"
        )


def read_source(path: Path) -> SourceSpec:
    try:
        return load_source(path)
    except SourceError as error:
        raise LocalRunError(str(error)) from None


@dataclass(frozen=True)
class SimulatorShape:
    """How the simulator stands in for the source's partner: its flags and the Connection to it."""

    args: list[str]
    auth: AuthConfig


def simulator_shape(spec: SourceSpec, base_args: list[str]) -> SimulatorShape:
    """The simulator serving the source's auth kind (with its header/parameter name) and, for a
    page-number source numbered from 0, pages from 0."""
    auth = AuthConfig(kind=spec.auth.type)
    args = [*base_args, f"--auth={auth.kind}"]
    if spec.auth.type == "api_key_header":
        auth = replace(auth, header=spec.auth.header)
        args.append(f"--auth-header={auth.header}")
    if spec.auth.type == "api_key_query":
        auth = replace(auth, param=spec.auth.param)
        args.append(f"--auth-param={auth.param}")
    if getattr(spec.paginator, "first_page", 1) == 0:
        args.append("--first-page=0")
    return SimulatorShape(args, auth)


def simulator_connection(base_url: str, auth: AuthConfig) -> str:
    """The Connection (AIRFLOW_CONN_ JSON) to the simulator, with its credentials."""
    match = re.fullmatch(r"(https?)://([^:/]+):(\d+)", base_url)
    assert match, base_url
    scheme, host, port = match.groups()
    document: dict[str, Any] = {"conn_type": "http", "schema": scheme, "host": host, "port": int(port)}
    if auth.kind in ("basic", "oauth2_client_credentials"):
        document["login"] = auth.login
    if auth.kind != "none":
        document["password"] = auth.secret
    return json.dumps(document)


def stage_source(source_file: Path, folder: Path, token_url: str | None = None) -> Path:
    """The source file copied alone into ``folder`` (the sources folder of this run); with
    ``token_url``, its OAuth2 token URL replaced (the simulator's)."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in [*folder.glob("*.yaml"), *folder.glob("*.yml")]:
        old.unlink()
    text = source_file.read_text(encoding="utf-8")
    if token_url is not None:
        document = yaml.safe_load(text)
        document["auth"]["token_url"] = token_url
        text = yaml.safe_dump(document, sort_keys=False)
    staged = folder / source_file.name
    staged.write_text(text, encoding="utf-8")
    return staged


@contextmanager
def partner_for(
    spec: SourceSpec, source_file: Path, folder: Path, logs: Path, simulator_args: list[str] | None
) -> Iterator[tuple[Path, str | None]]:
    """Stage the source; with ``simulator_args``, start the simulator in the source's shape and
    point the Connection at it. Yields the staged file and the simulator's URL (or None)."""
    if simulator_args is None:
        check_connection_in_environment(spec, os.environ)
        yield stage_source(source_file, folder), None
        return
    shape = simulator_shape(spec, simulator_args)
    with simulator_server(logs, shape.args) as base_url:
        variable = connection_variable(spec.connection_id)
        if os.environ.get(variable):
            notice = f"--simulator: {variable} from the environment is not used; the simulator's is"
            print(notice, file=sys.stderr)
        os.environ[variable] = simulator_connection(base_url, shape.auth)
        token_url = f"{base_url}/oauth/token" if spec.auth.type == "oauth2_client_credentials" else None
        yield stage_source(source_file, folder, token_url), base_url


FACTORY_DAG_FILE = "api_poller_sources.py"  # the DAG factory's DAG file
SOURCE_ERRORS_DAG_FILE = "api_poller_source_errors.py"  # where it reports broken source files


def source_dag(spec: SourceSpec, dags_folder: Path) -> Any:
    """The source's DAG, built by the DAG factory's own DAG file from the staged sources folder
    (only that file is parsed; the factory's error file tells why when no DAG was built)."""
    from airflow.dag_processing.dagbag import DagBag

    dag_id = names.source_dag_id(spec.name)
    dag = DagBag(dag_folder=str(dags_folder / FACTORY_DAG_FILE)).get_dag(dag_id)
    if dag is None:
        errors = DagBag(dag_folder=str(dags_folder / SOURCE_ERRORS_DAG_FILE))
        detail = "\n".join(str(error) for error in errors.import_errors.values()) or "(no error reported)"
        raise LocalRunError(f"the DAG factory built no DAG {dag_id}:\n{detail}")
    return dag


def source_conf(args: Any) -> dict[str, Any]:
    """The run's conf from ``--param NAME=VALUE`` (overridable query parameters), ``--full-refresh``,
    ``--concurrency`` and ``--fetch-tasks``."""
    params: dict[str, str] = {}
    for item in args.param or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise LocalRunError(f"--param {item!r}: give NAME=VALUE")
        params[name] = value
    conf: dict[str, Any] = {"concurrency": args.concurrency, "fetch_tasks": args.fetch_tasks}
    if params:
        conf["params"] = params
    if args.full_refresh:
        conf["full_refresh"] = True
    return conf
