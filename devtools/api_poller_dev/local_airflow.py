"""A real Airflow on 127.0.0.1: api-server, scheduler, dag-processor, triggerer (and Celery workers).

For integration tests, the benchmark and local runs that want the real scheduler rather than
``dag.test``. Every component binds 127.0.0.1 only, runs in its own process group and is stopped
(by that group) when the ``with`` block ends.

With the CeleryExecutor, each ``running_airflow`` gets a private namespace on the shared Redis
(a key prefix for every broker key and channel, and its own queue name), so concurrent runs and
anything else on that Redis cannot see each other's tasks; its keys are deleted afterwards. Each
worker reports itself as ``<hostname>-worker<N>`` (see ``worker_hostname``), so the task instances
show which worker ran them although all workers share one machine.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from api_poller_dev.local_stack import airflow_environment, free_port, wait_for_http

ADMIN_USER, ADMIN_PASSWORD = "admin", "admin"
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"
FINAL_RUN_STATES = ("success", "failed")
# Set per Celery worker process; ``worker_hostname`` appends it to the machine's name.
WORKER_NAME_ENV = "LOCAL_AIRFLOW_WORKER_NAME"


def worker_hostname() -> str:
    """Airflow's ``[core] hostname_callable`` for local runs: ``<hostname>-<worker name>`` in a worker.

    Task instances record the hostname they ran on; with several workers on one machine that
    would be the same name for all of them. Outside a worker this is the plain hostname.
    """
    name = os.environ.get(WORKER_NAME_ENV)
    return f"{socket.getfqdn()}-{name}" if name else socket.getfqdn()


def postgres_reachable() -> bool:
    try:
        import psycopg2

        psycopg2.connect(POSTGRES_ADMIN_URL, connect_timeout=3).close()
        return True
    except Exception:
        return False


def redis_reachable(url: str = REDIS_URL) -> bool:
    try:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def delete_redis_keys(url: str, prefix: str) -> int:
    """Delete every key under ``prefix`` (a run's Celery namespace); returns how many."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        return client.delete(*keys) if keys else 0
    finally:
        client.close()


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
    # Celery only: the broker, this Airflow's key prefix on it, its task queue and worker count.
    celery_broker_url: str | None = None
    celery_key_prefix: str | None = None
    celery_workers: int = 0
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
        with urllib.request.urlopen(request, timeout=60) as response:
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
        return self.dag_run(dag_id, run_id)["state"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600.0, poll: float = 0.5) -> str:
        """Poll the run until it ends. A poll the busy api-server does not answer in time (it also
        serves every running task's Execution API calls) is retried, up to ``timeout``."""
        deadline = time.monotonic() + timeout
        state = "unknown"
        while True:
            try:
                state = self.run_state(dag_id, run_id)
            except urllib.error.HTTPError:
                raise  # an answer, not a busy server
            except (TimeoutError, ConnectionError, urllib.error.URLError):
                pass
            if state in FINAL_RUN_STATES:
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {state} after {timeout:.0f}s")
            time.sleep(poll)

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=1000"
        return self.request("GET", path)["task_instances"]

    def wait_until_healthy(self, timeout: float = 300.0) -> None:
        """Wait for the api-server to answer; fail at once, with its log, if a component exits."""
        deadline = time.monotonic() + timeout
        while True:
            self._raise_if_exited()
            try:
                wait_for_http(f"{self.base_url}/api/v2/monitor/health", timeout=2)
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"Airflow did not answer within {timeout:.0f}s; api-server log:\n"
                        + self.log("api-server")[-3000:]
                    ) from None

    def _raise_if_exited(self, prefix: str = "") -> None:
        """Fail at once, with its log, if one of the components (named ``prefix...``) has exited."""
        for name, process in self.processes.items():
            if name.startswith(prefix) and process.poll() is not None:
                raise RuntimeError(f"{name} exited ({process.returncode}):\n{self.log(name)[-3000:]}")

    def celery_worker_nodes(self, timeout: float = 1.0) -> list[str]:
        """Node names of the Celery workers answering a ping on this Airflow's broker namespace."""
        from celery import Celery

        app = Celery(
            broker=self.celery_broker_url,
            broker_transport_options={"global_keyprefix": self.celery_key_prefix},
        )
        try:
            return sorted(node for reply in app.control.ping(timeout=timeout) for node in reply)
        finally:
            app.close()

    def wait_for_celery_workers(self, timeout: float = 120.0) -> list[str]:
        """Wait until every started Celery worker answers; returns their node names."""
        deadline = time.monotonic() + timeout
        while len(nodes := self.celery_worker_nodes()) < self.celery_workers:
            self._raise_if_exited("celery-worker")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{len(nodes)} of {self.celery_workers} Celery workers up after {timeout:.0f}s"
                )
        return nodes

    def log(self, component: str) -> str:
        return (self.home / "logs" / f"{component}.log").read_text(errors="replace")


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def _stop_all(processes: list[subprocess.Popen], timeout: float = 20.0) -> None:
    """Stop components and everything they forked (each has its own process group), together.

    SIGTERM to every group first, so they shut down in parallel; whatever still runs after
    ``timeout`` (or is left in a group whose leader exited) gets SIGKILL.
    """
    for process in processes:
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes:
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
    for process in processes:
        _signal_group(process, signal.SIGKILL)
        process.wait()


@contextmanager
def running_airflow(
    home: Path,
    *,
    database_url: str | None = None,
    executor: str = "LocalExecutor",
    celery_workers: int = 0,
    extra_env: dict[str, str] | None = None,
    parallelism: int = 16,
    worker_concurrency: int = 2,
    redis_url: str = REDIS_URL,
    startup_timeout: float = 300.0,
) -> Iterator[AirflowServer]:
    """Start Airflow's components for this project on 127.0.0.1 and yield a client for it.

    ``database_url`` defaults to SQLite in ``home`` (fine for a few concurrent tasks; use
    PostgreSQL for anything bigger). With ``executor="CeleryExecutor"`` (needs ``database_url``),
    ``celery_workers`` worker processes with ``worker_concurrency`` task slots each are started,
    using ``redis_url`` as broker (in a namespace of its own) and the metadata database as
    result backend.
    """
    celery = executor == "CeleryExecutor"
    if celery and not database_url:
        raise ValueError("the CeleryExecutor needs a database_url (PostgreSQL): SQLite cannot be shared")
    if celery_workers and not celery:
        raise ValueError(f"celery_workers needs executor='CeleryExecutor', not {executor!r}")
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
        # A busy 2-core api-server can stall for seconds; tasks should wait rather than fail.
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
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
            "api_poller_dev.local_airflow.SQLITE_CONNECT_ARGS"
        )
    namespace = f"api_poller_{uuid.uuid4().hex[:10]}"
    if celery:
        settings.update(
            {
                "AIRFLOW__CELERY__BROKER_URL": redis_url,
                # Celery's database backend takes any SQLAlchemy URL behind "db+".
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{database_url}",
                # Private namespace on the shared Redis: every key and channel is prefixed,
                # and the tasks go to a queue no other worker listens on.
                "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": f"{namespace}:",
                "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "3600",
                "AIRFLOW__OPERATORS__DEFAULT_QUEUE": namespace,
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(worker_concurrency),
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "api_poller_dev.local_airflow.worker_hostname",
            }
        )
    settings.update(extra_env or {})
    env = {**os.environ, **airflow_environment(home, settings)}
    env.pop(WORKER_NAME_ENV, None)

    airflow = [sys.executable, "-m", "airflow"]
    subprocess.run([*airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    commands = {
        "api-server": [*airflow, "api-server", "--host", "127.0.0.1", "--port", str(port)],
        "scheduler": [*airflow, "scheduler", "--skip-serve-logs"],
        "dag-processor": [*airflow, "dag-processor"],
        "triggerer": [*airflow, "triggerer", "--skip-serve-logs"],
    }
    environments = dict.fromkeys(commands, env)
    for index in range(celery_workers):
        name = f"celery-worker-{index}"
        commands[name] = [
            *airflow, "celery", "worker", "--skip-serve-logs",
            "--concurrency", str(worker_concurrency),
            "--queues", settings["AIRFLOW__OPERATORS__DEFAULT_QUEUE"],
            "--celery-hostname", f"worker{index}.{namespace}@%h",
        ]  # fmt: skip
        environments[name] = {**env, WORKER_NAME_ENV: f"worker{index}"}
    server = AirflowServer(base_url=base_url, env=env, home=home)
    if celery:
        server.celery_broker_url = redis_url
        server.celery_key_prefix = f"{namespace}:"
        server.celery_workers = celery_workers
    with ExitStack() as stack:
        if celery:
            # Runs last: after every component has stopped.
            stack.callback(delete_redis_keys, redis_url, f"{namespace}:")
        # Stops whatever was started, also when a later start fails.
        stack.callback(lambda: _stop_all(list(server.processes.values())))
        for name, command in commands.items():
            log = stack.enter_context(open(home / "logs" / f"{name}.log", "wb"))
            process = subprocess.Popen(
                command, env=environments[name], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            server.processes[name] = process
        server.wait_until_healthy(timeout=startup_timeout)
        yield server


SQLITE_CONNECT_ARGS = {"timeout": 60}
