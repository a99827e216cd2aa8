"""What the contenders run against: moto's server, a PostgreSQL-backed Airflow, and tool venvs."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from api_poller import names

from .config import BENCH, ROOT
from .console import log

if TYPE_CHECKING:
    from api_poller_dev.local_airflow import AirflowServer


# The benchmark's Airflow settings beyond the local stack's (docs/deployment.md, "Scheduling and
# start-up settings"), which --airflow-env / --tuned-env override. Recorded in results.json.
DEPLOYMENT_SETTINGS = {
    # The DAG files do not change during a benchmark: re-parse them every 5 min, not 30 s (each
    # parse forks a parser importing the DAG's modules: CPU taken from the system measured).
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "300",
}


def ensure_venv(venv: Path, lock: Path) -> Path:
    """A venv holding exactly ``lock`` (hash-checked), its bytecode compiled (as pip does; uv does
    not, and with PYTHONDONTWRITEBYTECODE set every start would compile it again); rebuilt when
    the lock changes."""
    python = venv / "bin" / "python"
    stamp = venv / ".lock-sha256"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest() + " compile-bytecode"
    if python.exists() and stamp.exists() and stamp.read_text() == digest:
        return python
    base = getattr(sys, "_base_executable", sys.executable)
    log(f"installing {lock.relative_to(ROOT)} into {venv.relative_to(ROOT)}")
    uv = shutil.which("uv")
    if uv:
        if not python.exists():
            subprocess.run([uv, "venv", "--quiet", "--python", base, str(venv)], check=True)
        sync = [uv, "pip", "sync", "--quiet", "--require-hashes", "--compile-bytecode"]
        subprocess.run([*sync, "--python", str(python), str(lock)], check=True)
    else:
        subprocess.run([base, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--require-hashes", "-r", str(lock)], check=True
        )
    stamp.write_text(digest)
    return python


def http_json(url: str, method: str = "GET", timeout: float = 10.0) -> Any:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def reset_moto(endpoint: str) -> None:
    """Every run starts on an empty moto (the DAG recreates its buckets and queues)."""
    http_json(f"{endpoint}/moto-api/reset", method="POST")


@contextlib.contextmanager
def moto(work: Path, stock: bool) -> Iterator[str]:
    """moto's server on 127.0.0.1: with bench/moto_server.py's SQS fixes unless ``stock``."""
    from api_poller_dev.local_stack import background_process, free_port, moto_server, wait_for_http

    if stock:
        with moto_server(work) as endpoint:
            yield endpoint
        return
    port = free_port()
    command = [sys.executable, str(BENCH / "moto_server.py"), "-H", "127.0.0.1", "-p", str(port)]
    with background_process(command, work / "moto.log"):
        endpoint = f"http://127.0.0.1:{port}"
        wait_for_http(f"{endpoint}/moto-api/")
        yield endpoint


@contextlib.contextmanager
def airflow_stack(
    name: str, work: Path, endpoint: str, args: argparse.Namespace, env: dict[str, str]
) -> Iterator[AirflowServer]:
    """A real Airflow (LocalExecutor) on a scratch PostgreSQL database, once the poller DAG is parsed."""
    from api_poller_dev.local_airflow import running_airflow, scratch_postgres_database
    from api_poller_dev.local_stack import aws_connection

    compile_project_code()
    install_local_settings(work / name)
    with (
        scratch_postgres_database("api_poller_bench") as database_url,
        running_airflow(
            work / name,
            database_url=database_url,
            parallelism=args.parallelism,
            extra_env={"AIRFLOW_CONN_AWS_DEFAULT": aws_connection(endpoint), **DEPLOYMENT_SETTINGS, **env},
        ) as airflow,
    ):
        airflow.wait_for_dag(names.POLLER_DAG_ID)
        log(f"{name} is up at {airflow.base_url} (home {work / name})")
        yield airflow


def compile_project_code() -> None:
    """Bytecode for the project's own modules: every task process imports the DAG file and
    ``api_poller`` anew, and with PYTHONDONTWRITEBYTECODE set Python would compile them each time."""
    import compileall

    for folder in ("include", "dags", "plugins"):
        compileall.compile_dir(ROOT / folder, quiet=1)


def install_local_settings(airflow_home: Path) -> None:
    """The deployments' ``airflow_local_settings.py`` (deploy/: preloads what every task imports)
    in the Airflow home's config folder, which Airflow puts on ``sys.path``."""
    config = airflow_home / "config"
    config.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ROOT / "deploy" / "airflow_local_settings.py", config / "airflow_local_settings.py")


def warm_up(airflow: AirflowServer, endpoint: str, work: Path) -> None:
    """One small unmeasured run, so the first measured one does not pay for cold caches."""
    from api_poller_dev.local_stack import simulator_server

    reset_moto(endpoint)
    with simulator_server(
        work / "warmup", ["--total-records=1000", "--latency-ms=0", "--error-rate=0"]
    ) as base:
        run_id = airflow.trigger(names.POLLER_DAG_ID, {"url": f"{base}/payload", "fetch_tasks": 2})
        state = airflow.wait_for_run(names.POLLER_DAG_ID, run_id, timeout=300)
    log(f"warm-up run: {state}")
