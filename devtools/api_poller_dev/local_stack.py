"""The embedded local stack: moto's server for S3/SQS and the partner-API simulator, on 127.0.0.1.

Used by the one-command local run, the benchmark and the tests that need a real Airflow.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout:.0f}s") from None
            time.sleep(0.1)


def aws_connection(endpoint: str) -> str:
    """The ``aws_default`` connection (as an AIRFLOW_CONN_ JSON value) pointing at a local endpoint."""
    return json.dumps(
        {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"region_name": "us-east-1", "endpoint_url": endpoint},
        }
    )


def airflow_environment(airflow_home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for an Airflow that loads this project's dags/, plugins/ and include/."""
    python_path = [str(PROJECT_ROOT / "include"), os.environ.get("PYTHONPATH", "")]
    env = {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home}/airflow.db",
        "PYTHONPATH": os.pathsep.join(filter(None, python_path)),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        # The local partner-API simulator is on loopback, which the SSRF guard refuses by default.
        "API_POLLER_URL_ALLOWLIST": "127.0.0.1",
        # Two malloc arenas, as the deployments set (docs/deployment.md): a task's threads
        # otherwise each keep freed memory in an arena of their own.
        "MALLOC_ARENA_MAX": "2",
    }
    env.update(extra or {})
    return env


@contextmanager
def background_process(command: Sequence[str], log_path: Path, env: dict[str, str] | None = None):
    """Run a server for the duration of a ``with`` block; stops it (by its own PID) afterwards."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def moto_server(log_dir: Path) -> Iterator[str]:
    """moto in server mode on 127.0.0.1; yields its endpoint URL."""
    port = free_port()
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with background_process(command, log_dir / "moto.log"):
        endpoint = f"http://127.0.0.1:{port}"
        wait_for_http(f"{endpoint}/moto-api/")
        yield endpoint


@contextmanager
def simulator_server(log_dir: Path, simulator_args: Sequence[str] = ()) -> Iterator[str]:
    """The partner-API simulator on 127.0.0.1; yields its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "api_poller_dev.simulator", "--port", str(port), *simulator_args]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "devtools")}
    with background_process(command, log_dir / "simulator.log", env=env):
        base_url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base_url}/health")
        yield base_url
