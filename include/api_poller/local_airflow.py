"""A real Airflow on 127.0.0.1: api-server, scheduler, dag-processor, triggerer (and Celery workers).

For integration tests, the benchmark and local runs that want the real scheduler rather than
``dag.test``. Every component binds 127.0.0.1 only, runs in its own process group and is stopped
(by that group) when the ``with`` block ends.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from api_poller.local_stack import airflow_environment, free_port, wait_for_http

ADMIN_USER, ADMIN_PASSWORD = "admin", "admin"
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
FINAL_RUN_STATES = ("success", "failed")


def postgres_reachable() -> bool:
    try:
        import psycopg2

        psycopg2.connect(POSTGRES_ADMIN_URL, connect_timeout=3).close()
        return True
    except Exception:
        return False


@contextmanager
def scratch_postgres_database(prefix: str = "api_poller") -> Iterator[str]:
    """A new, empty PostgreSQL database for one Airflow; dropped afterwards."""
    import psycopg2

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(POSTGRES_ADMIN_URL)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@dataclass
class AirflowServer:
    """A running Airflow, driven through its public REST API."""

    base_url: str
    env: dict[str, str]
    home: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    _token: str | None = None

    # -- REST ---------------------------------------------------------------------------------

    def token(self) -> str:
        if self._token is None:
            answer = self.request(
                "POST", "/auth/token", {"username": ADMIN_USER, "password": ADMIN_PASSWORD}, auth=False
            )
            self._token = answer["access_token"]
        return self._token

    def request(
        self, method: str, path: str, body: Any = None, *, auth: bool = True, token: str | None = None
    ):
        """JSON in, JSON out; raises urllib.error.HTTPError on 4xx/5xx."""
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {token or self.token()}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def wait_for_dag(self, dag_id: str, timeout: float = 120.0) -> None:
        """Wait until the dag-processor has parsed the DAG, then unpause it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.request("GET", f"/api/v2/dags/{dag_id}")
                break
            except urllib.error.HTTPError as error:
                if error.code != 404 or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        self.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        run = self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})
        return run["dag_run_id"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600.0, poll: float = 0.5) -> str:
        deadline = time.monotonic() + timeout
        while (state := self.run_state(dag_id, run_id)) not in FINAL_RUN_STATES:
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {state} after {timeout:.0f}s")
            time.sleep(poll)
        return state

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=1000"
        return self.request("GET", path)["task_instances"]

    def log(self, component: str) -> str:
        return (self.home / "logs" / f"{component}.log").read_text(errors="replace")


def _stop(process: subprocess.Popen) -> None:
    """Stop a component and everything it forked (its own process group)."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


@contextmanager
def running_airflow(
    home: Path,
    *,
    database_url: str | None = None,
    executor: str = "LocalExecutor",
    celery_workers: int = 0,
    extra_env: dict[str, str] | None = None,
    parallelism: int = 16,
) -> Iterator[AirflowServer]:
    """Start Airflow's components for this project on 127.0.0.1 and yield a client for it.

    ``database_url`` defaults to SQLite in ``home`` (fine for a few concurrent tasks; use
    PostgreSQL for anything bigger). With ``executor="CeleryExecutor"``, ``celery_workers``
    worker processes are started, using Redis on 127.0.0.1:6379 as broker and the metadata
    database as result backend.
    """
    home.mkdir(parents=True, exist_ok=True)
    (home / "logs").mkdir(exist_ok=True)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({ADMIN_USER: ADMIN_PASSWORD}))
    settings = {
        "AIRFLOW__CORE__EXECUTOR": executor,
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
        "AIRFLOW__API_AUTH__JWT_ISSUER": "api-poller-local",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
    }
    if database_url:
        settings["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = database_url
    else:
        # SQLite: wait for locks instead of failing at once when components write together.
        settings["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS"] = (
            "api_poller.local_airflow.SQLITE_CONNECT_ARGS"
        )
    if executor == "CeleryExecutor":
        settings["AIRFLOW__CELERY__BROKER_URL"] = "redis://127.0.0.1:6379/0"
        settings["AIRFLOW__CELERY__RESULT_BACKEND"] = "db+" + (database_url or "").replace("+psycopg2", "")
    settings.update(extra_env or {})
    env = {**os.environ, **airflow_environment(home, settings)}

    airflow = [sys.executable, "-m", "airflow"]
    subprocess.run([*airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    commands = {
        "api-server": [*airflow, "api-server", "--host", "127.0.0.1", "--port", str(port)],
        "scheduler": [*airflow, "scheduler", "--skip-serve-logs"],
        "dag-processor": [*airflow, "dag-processor"],
        "triggerer": [*airflow, "triggerer", "--skip-serve-logs"],
    }
    for index in range(celery_workers):
        commands[f"celery-worker-{index}"] = [
            *airflow, "celery", "worker", "--concurrency", "4", "--skip-serve-logs",
            "--celery-hostname", f"worker{index}@%h",
        ]  # fmt: skip
    server = AirflowServer(base_url=base_url, env=env, home=home)
    with ExitStack() as stack:
        for name, command in commands.items():
            log = stack.enter_context(open(home / "logs" / f"{name}.log", "wb"))
            process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            server.processes[name] = process
            stack.callback(_stop, process)
        wait_for_http(f"{base_url}/api/v2/monitor/health", timeout=120)
        yield server


SQLITE_CONNECT_ARGS = {"timeout": 60}
